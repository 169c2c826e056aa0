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

from lt_common import add, close, download, log, make_session, print_peers, report_peers


def main():
    torrent, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    log("leecher listening on", port)
    print("PORT %d" % port, flush=True)
    h = add(ses, torrent, save_path)
    peers = [None]
    seen = set()

    def tick():
        peers[0] = print_peers(h, peers[0])
        report_peers(h, seen)

    download(ses, h, peer_port, timeout, lambda s: s.is_seeding, tick)
    s = close(ses, h, "complete:")
    del h
    del ses
    print("WANTED_DONE %d" % s.total_wanted_done, flush=True)
    print("DONE %d" % s.total_payload_download, flush=True)


if __name__ == "__main__":
    main()
