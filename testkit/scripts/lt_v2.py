#!/usr/bin/python3
"""Make a v2-only or hybrid torrent with libtorrent and print what it says.

usage: lt_v2.py OUT.torrent PATH v2|hybrid PIECE_LENGTH
(PATH relative to the working directory, which holds the content)

Prints, one item per line:
  v1 <40 hex, or - for v2-only>
  v2 <64 hex>
  file <pad 0|1> <length> <pieces root hex, or -> <path as libtorrent shows it>
  layer <pieces root hex> <piece layer hex>   (from the generated dict)
"""
import sys

import libtorrent as lt

out, path, kind, piece_length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
flags = {"v2": lt.create_torrent.v2_only, "hybrid": 0}[kind]
fs = lt.file_storage()
lt.add_files(fs, path)
ct = lt.create_torrent(fs, piece_length, flags=flags)
lt.set_piece_hashes(ct, ".")
d = ct.generate()
with open(out, "wb") as f:
    f.write(lt.bencode(d))

ti = lt.torrent_info(out)
ih = ti.info_hashes()
print("v1", str(ih.v1) if ih.has_v1() else "-")
print("v2", str(ih.v2))
files = ti.files()
zero = "0" * 64
for i in range(files.num_files()):
    pad = 1 if files.file_flags(i) & lt.file_storage.flag_pad_file else 0
    root = str(files.root(i))
    print("file", pad, files.file_size(i), "-" if root == zero else root, files.file_path(i))
for root, layer in sorted(d.get(b"piece layers", {}).items()):
    print("layer", root.hex(), layer.hex())
