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

from lt_common import add_params, close, download, log, make_session


def main():
    uri, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    log("magnet leecher listening on", port)
    atp = lt.parse_magnet_uri(uri)
    atp.save_path = save_path
    added = time.monotonic()
    h = add_params(ses, atp)
    said_metadata = [False]

    def tick():
        if h.status().has_metadata and not said_metadata[0]:
            ti = h.torrent_file()
            digest = hashlib.sha1(bytes(ti.metadata())).hexdigest()
            print("METADATA %s %.4f" % (digest, time.monotonic() - added), flush=True)
            said_metadata[0] = True

    download(ses, h, peer_port, timeout, lambda s: s.is_seeding, tick)
    tick()
    s = close(ses, h, "complete:")
    del h
    del ses
    print("DONE %d" % s.total_payload_download, flush=True)


if __name__ == "__main__":
    main()
