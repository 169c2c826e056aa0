"""libtorrent 2.0's creator: a v1, v2 or hybrid torrent of PATH (default settings).

usage: /usr/bin/python3 lt_create.py PATH OUT KIND PIECE_LENGTH
(KIND: v1, v2 or hybrid; nothing is sent anywhere.)
"""
import os, sys
import libtorrent as lt

path, out, kind, plen = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fs = lt.file_storage()
lt.add_files(fs, path)
flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[kind]
ct = lt.create_torrent(fs, plen, flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
with open(out, "wb") as f:
    f.write(lt.bencode(ct.generate()))
