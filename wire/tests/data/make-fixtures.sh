#!/usr/bin/env bash
# Regenerates the committed .torrent fixtures from the files under sample/
# with three real tools, and records the info hash each tool reports in
# expected.txt (`<file> <info hash> <tool that reported it>`).
# Needs mktorrent, transmission-cli and python3-libtorrent (Debian).
# creation dates make the outer bytes differ per run; info hashes do not.
set -euo pipefail
cd "$(dirname "$0")"
tracker=http://127.0.0.1:6969/announce
rm -f ./*.torrent expected.txt

# multi-file, 32 KiB pieces (the README's `bittern info` example)
mktorrent -a "$tracker" -l 15 -c "bittern sample" -o sample.torrent sample >/dev/null
# single-file with a non-ASCII name
mktorrent -a "$tracker" -l 15 -o mk-single.torrent "sample/data/ünïcødé.txt" >/dev/null
transmission-create -o tr-multi.torrent -t "$tracker" -s 16 -c "cömment" sample >/dev/null
transmission-create -o tr-single.torrent -t "$tracker" -p -s 32 sample/data/numbers.txt >/dev/null

/usr/bin/python3 - "$tracker" <<'PY'
import sys, libtorrent as lt
tracker = sys.argv[1]
def make(out, path, flags):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, 16384, flags=flags)
    ct.add_tracker(tracker)
    lt.set_piece_hashes(ct, path.rsplit("/", 1)[0] if "/" in path else ".")
    open(out, "wb").write(lt.bencode(ct.generate()))
# hybrid v1+v2: libtorrent adds BEP 47 padding files
make("lt-hybrid.torrent", "sample", 0)
make("lt-single.torrent", "sample/data/numbers.txt", lt.create_torrent.v1_only)
PY

for f in sample.torrent mk-single.torrent tr-multi.torrent tr-single.torrent; do
    h=$(transmission-show "$f" | sed -n 's/^ *Hash[^:]*: *\([0-9a-f]\{40\}\).*/\1/p' | head -n1)
    echo "$f $h transmission-show" >>expected.txt
done
for f in ./*.torrent; do
    f=${f#./}
    h=$(/usr/bin/python3 -c 'import sys,libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hashes().v1)' "$f")
    echo "$f $h libtorrent" >>expected.txt
done
cat expected.txt
