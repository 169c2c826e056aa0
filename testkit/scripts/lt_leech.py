"""libtorrent leecher for bittern's interop tests.

Usage: /usr/bin/python3 lt_leech.py TORRENT SAVE_PATH PEER_PORT [TIMEOUT_S]

Downloads TORRENT into SAVE_PATH from the peer at 127.0.0.1:PEER_PORT,
prints "WANTED_DONE <bytes of wanted pieces checked>" and then "DONE
<payload bytes downloaded>" on stdout once the download is complete and
checked, and exits 0. Prints "PORT <n>" (its listen
port) first. Exits 2 on timeout. Prints
"PEERS <ip:port> ..." whenever the set of connected peers changes.
"""

import sys
import time

from lt_common import add, describe, drain_alerts, log, make_session, print_peers, report_peers


def main():
    torrent, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    log("leecher listening on", port)
    print("PORT %d" % port, flush=True)
    h = add(ses, torrent, save_path)
    peer = ("127.0.0.1", peer_port)
    deadline = time.monotonic() + timeout
    last_connect = 0.0
    last_log = 0.0
    peers = None
    seen = set()
    while True:
        peers = print_peers(h, peers)
        report_peers(h, seen)
        s = h.status()
        if s.is_seeding:
            break
        now = time.monotonic()
        if now > deadline:
            log("timed out:", describe(h))
            drain_alerts(ses)
            sys.exit(2)
        # (Re)connect whenever we have no peer: the first attempt may come
        # while the torrent is still checking.
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
    # Close the files before the test compares them.
    ses.remove_torrent(h)
    del h
    del ses
    print("WANTED_DONE %d" % s.total_wanted_done, flush=True)
    print("DONE %d" % s.total_payload_download, flush=True)


if __name__ == "__main__":
    main()
