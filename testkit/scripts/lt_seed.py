"""libtorrent seeder for bittern's interop tests.

Usage: /usr/bin/python3 lt_seed.py TORRENT SAVE_PATH [LISTEN [SETTINGS]]

LISTEN is libtorrent's listen interface, "127.0.0.1:0" by default (e.g.
"[::1]:0" for IPv6 loopback, "127.0.0.2:0" for a loopback address of its
own), also its outgoing interface; SETTINGS a JSON object of libtorrent
settings to override (e.g. an upload rate limit).

Prints "PEERS <ip:port> ..." whenever the set of connected peers changes.

Checks the data under SAVE_PATH, then prints "PORT <n>" on stdout once it
is seeding and keeps serving until killed. Diagnostics go to stderr.
"""

import json
import sys

from lt_common import add, make_session, serve, wait_checked


def main():
    torrent, save_path = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        listen = sys.argv[3]
        # connections leave from the listen address ("127.0.0.2:0" dials
        # from 127.0.0.2, so peers and trackers see one address)
        outgoing = listen.rsplit(":", 1)[0].strip("[]")
        extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
        ses, port = make_session(listen, outgoing, extra)
    else:
        ses, port = make_session()
    h = add(ses, torrent, save_path)
    wait_checked(ses, h, lambda s: s.is_seeding, "seeding")
    print("PORT %d" % port, flush=True)
    serve(ses, h, report=True)


if __name__ == "__main__":
    main()
