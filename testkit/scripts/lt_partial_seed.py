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
import time

import libtorrent as lt

from lt_common import describe, drain_alerts, log, make_session, print_peers


def main():
    torrent, save_path = sys.argv[1], sys.argv[2]
    ses, port = make_session()
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    atp.file_priorities = [4] + [0] * (atp.ti.num_files() - 1)
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(atp)
    deadline = time.monotonic() + 30
    while True:
        s = h.status()
        if s.is_finished and not s.is_seeding:
            break
        if time.monotonic() > deadline:
            log("not finished after the check:", describe(h))
            sys.exit(2)
        drain_alerts(ses)
        time.sleep(0.05)
    log("finished (partial):", describe(h))
    print("PORT %d" % port, flush=True)
    last = 0.0
    peers = None
    while True:
        drain_alerts(ses)
        peers = print_peers(h, peers)
        if time.monotonic() - last > 1:
            log(describe(h))
            last = time.monotonic()
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
