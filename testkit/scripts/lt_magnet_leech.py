"""libtorrent leecher started from a magnet link, for bittern's interop tests.

Usage: /usr/bin/python3 lt_magnet_leech.py MAGNET SAVE_PATH PEER_PORT [TIMEOUT_S]

Adds MAGNET (no .torrent), connects to the peer at 127.0.0.1:PEER_PORT,
prints "METADATA <sha1 of the fetched info dictionary> <seconds>" once
libtorrent has the metadata (seconds since the magnet was added), then "DONE <payload bytes downloaded>" once the download
is complete and checked, and exits 0. Exits 2 on timeout.
"""

import hashlib
import sys
import time

import libtorrent as lt

from lt_common import describe, drain_alerts, log, make_session


def main():
    uri, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    log("magnet leecher listening on", port)
    atp = lt.parse_magnet_uri(uri)
    atp.save_path = save_path
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    added = time.monotonic()
    h = ses.add_torrent(atp)
    peer = ("127.0.0.1", peer_port)
    deadline = time.monotonic() + timeout
    h.connect_peer(peer)
    last_connect = time.monotonic()
    last_log = 0.0
    said_metadata = False
    while True:
        s = h.status()
        if s.has_metadata and not said_metadata:
            ti = h.torrent_file()
            digest = hashlib.sha1(bytes(ti.metadata())).hexdigest()
            print("METADATA %s %.4f" % (digest, time.monotonic() - added), flush=True)
            said_metadata = True
        if s.is_seeding:
            break
        now = time.monotonic()
        if now > deadline:
            log("timed out:", describe(h))
            drain_alerts(ses)
            sys.exit(2)
        if s.num_peers == 0 and now - last_connect > 1:
            h.connect_peer(peer)
            last_connect = now
        if now - last_log > 1:
            log(describe(h))
            last_log = now
        drain_alerts(ses)
        time.sleep(0.05)
    drain_alerts(ses)
    s = h.status()
    log("complete:", describe(h))
    ses.remove_torrent(h)
    del h
    del ses
    print("DONE %d" % s.total_payload_download, flush=True)


if __name__ == "__main__":
    main()
