"""libtorrent leecher wanting the first file only, for bittern's test of
libtorrent's `upload_only` extension message.

Usage: /usr/bin/python3 lt_upload_only_leech.py TORRENT SAVE_PATH PEER_PORT [HOLD_S]

Starts with nothing, the other files at priority 0, and connects to
127.0.0.1:PEER_PORT (a bittern peer with the first file that wants more,
so libtorrent keeps the connection once it is finished: it closes one to
a seed then, and with close_redundant_connections off it never sends
`upload_only` at all). Once the first file is
complete it prints "FINISHED <bytes>" (payload downloaded), keeps the
connection open for HOLD_S seconds (default 60) and exits 0; exits 2 if
the file is not complete within 60 s.
"""

import sys
import time

from lt_common import add, describe, drain_alerts, log, make_session


def main():
    torrent, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    h = add(ses, torrent, save_path)
    files = h.torrent_file().files()
    h.prioritize_files([1] + [0] * (files.num_files() - 1))
    first = files.file_size(0)
    peer = ("127.0.0.1", peer_port)
    deadline = time.monotonic() + 60.0
    last_connect = 0.0
    last_log = 0.0
    finished_at = None
    while True:
        now = time.monotonic()
        if finished_at is None and h.file_progress()[0] == first:
            finished_at = now
            log("first file complete:", describe(h))
            print("FINISHED %d" % h.status().total_payload_download, flush=True)
        if finished_at is not None and now - finished_at > hold:
            break
        if finished_at is None and now > deadline:
            log("timed out:", describe(h))
            drain_alerts(ses)
            sys.exit(2)
        if h.status().num_peers == 0 and now - last_connect > 1:
            h.connect_peer(peer)
            last_connect = now
        if now - last_log > 1:
            log(describe(h))
            last_log = now
        drain_alerts(ses)
        time.sleep(0.05)
    ses.remove_torrent(h)


if __name__ == "__main__":
    main()
