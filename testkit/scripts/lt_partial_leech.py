"""libtorrent leecher wanting every file, for bittern's BEP 21 test.

Usage: /usr/bin/python3 lt_partial_leech.py TORRENT SAVE_PATH PEER_PORT [TIMEOUT_S]

Prints "PORT <n>" first, then connects to 127.0.0.1:PEER_PORT (a partial
seed that has the first file only, so the download never completes). Once
the first file is complete on disk it prints "DONE <flags> <bytes>": the
peer_info flags libtorrent holds for that peer (bit 13, 0x2000, is
peer_info.upload_only: the peer said upload_only, BEP 21) and its payload
bytes downloaded; then it closes the files and exits 0. Exits 2 on timeout.
"""

import sys

from lt_common import add, close, download, make_session


def main():
    torrent, save_path, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    ses, port = make_session()
    print("PORT %d" % port, flush=True)
    h = add(ses, torrent, save_path)
    first = h.torrent_file().files().file_size(0)
    flags = [0]

    def tick():
        for p in h.get_peer_info():
            if p.ip[1] == peer_port and not int(p.flags) & 0xC0:
                flags[0] = int(p.flags)

    def done(s):
        return s.has_metadata and h.file_progress()[0] == first and flags[0]

    download(ses, h, peer_port, timeout, done, tick, lambda: "flags %s" % hex(flags[0]))
    s = close(ses, h, "first file complete (flags %s):" % hex(flags[0]))
    del h
    del ses
    print("DONE %d %d" % (flags[0], s.total_payload_download), flush=True)


if __name__ == "__main__":
    main()
