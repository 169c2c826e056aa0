"""libtorrent partial seed for bittern's BEP 21 test.

Usage: /usr/bin/python3 lt_partial_seed.py TORRENT SAVE_PATH

Adds TORRENT with the first file wanted and every other file at priority
0, the first file's data already under SAVE_PATH (ending on a piece
boundary, so its pieces are complete). Once libtorrent has checked it and
is finished (all it wants) but not seeding, prints "PORT <n>" and serves
until killed, printing "PEERS <ip:port> ..." whenever the set of
connected peers changes.
"""

import sys

import libtorrent as lt

from lt_common import add, make_session, serve, wait_checked


def main():
    torrent, save_path = sys.argv[1], sys.argv[2]
    ses, port = make_session()
    files = lt.torrent_info(torrent).num_files()
    h = add(ses, torrent, save_path, [4] + [0] * (files - 1))
    wait_checked(ses, h, lambda s: s.is_finished and not s.is_seeding, "finished (partial)")
    print("PORT %d" % port, flush=True)
    serve(ses, h)


if __name__ == "__main__":
    main()
