"""Prints the v1 info hash libtorrent computes for a .torrent file.

usage: /usr/bin/python3 lt_hash.py FILE.torrent
"""
import sys

import libtorrent as lt

ti = lt.torrent_info(sys.argv[1])
hashes = ti.info_hashes() if hasattr(ti, "info_hashes") else None
v1 = hashes.v1 if hashes is not None else ti.info_hash()
print("info_hash", str(v1))
print("name", ti.name())
print("total_size", ti.total_size())
print("num_pieces", ti.num_pieces())
print("num_files", ti.num_files())
