"""libtorrent (2.0) makes a torrent of a file or directory.

Usage: /usr/bin/python3 lt_create.py PATH OUT KIND PIECE_LENGTH [TRACKER]

KIND is "v1", "v2" or "hybrid" (libtorrent's default, with BEP 47 padding
files between files). Prints "INFO_HASH <v1 hex>" (or "-" for v2-only).
"""

import os
import sys

import libtorrent as lt


def main():
    path, out, kind, plen = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    fs = lt.file_storage()
    lt.add_files(fs, path)
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[kind]
    ct = lt.create_torrent(fs, plen, flags=flags)
    if len(sys.argv) > 5:
        ct.add_tracker(sys.argv[5])
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    data = lt.bencode(ct.generate())
    with open(out, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(out)
    v1 = ti.info_hashes().v1
    print("INFO_HASH", "-" if v1.is_all_zeros() else str(v1), flush=True)


if __name__ == "__main__":
    main()
