"""libtorrent seeder for bittern's interop tests.

Usage: /usr/bin/python3 lt_seed.py TORRENT SAVE_PATH

Checks the data under SAVE_PATH, then prints "PORT <n>" on stdout once it
is seeding and keeps serving until killed. Diagnostics go to stderr.
"""

import sys
import time

from lt_common import add, describe, drain_alerts, log, make_session, report_peers


def main():
    torrent, save_path = sys.argv[1], sys.argv[2]
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
    seen = set()
    while True:
        drain_alerts(ses)
        report_peers(h, seen)
        if time.monotonic() - last > 1:
            log(describe(h))
            last = time.monotonic()
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
