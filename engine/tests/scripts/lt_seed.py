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
import time

from lt_common import add, describe, drain_alerts, log, make_session, print_peers, report_peers


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
    deadline = time.monotonic() + 30
    while not h.status().is_seeding:
        if time.monotonic() > deadline:
            log("not seeding after the check:", describe(h))
            sys.exit(2)
        drain_alerts(ses)
        time.sleep(0.05)
    log("seeding:", describe(h))
    print("PORT %d" % port, flush=True)
    last = 0.0
    peers = None
    seen = set()
    while True:
        drain_alerts(ses)
        peers = print_peers(h, peers)
        report_peers(h, seen)
        if time.monotonic() - last > 1:
            log(describe(h))
            last = time.monotonic()
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
