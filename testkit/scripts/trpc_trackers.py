"""Reads `tracker_stats` and `pieces` of a `bittern daemon` torrent with the
PyPI transmission-rpc package (7.0.12) and checks them against the truth:
the tracker URL in the .torrent, and the pieces that hash right on disk.

Usage: trpc_trackers.py PORT TORRENT DOWNLOAD_DIR
The torrent (id 1) is multi-file, part of its files unwanted and the rest
downloaded. Prints OK at the end; any failure raises.
"""
import base64
import hashlib
import os
import sys
import time

from transmission_rpc import Client

port, torrent_path, download_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def bdecode(b, i=0):
    """A minimal bencode decoder: (value, next index)."""
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        i, out = i + 1, []
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i, out = i + 1, {}
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            v, i = bdecode(b, i)
            out[k] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


meta, _ = bdecode(open(torrent_path, "rb").read())
info = meta[b"info"]
plen = info[b"piece length"]
hashes = [info[b"pieces"][k:k + 20] for k in range(0, len(info[b"pieces"]), 20)]
root = os.path.join(download_dir, info[b"name"].decode())


def disk_bytes():
    """The torrent's bytes as they are on disk (missing files read as zeros)."""
    out = bytearray()
    for f in info[b"files"]:
        path = os.path.join(root, *(p.decode() for p in f[b"path"]))
        data = open(path, "rb").read() if os.path.exists(path) else b""
        data = data[:f[b"length"]]
        out += data + bytes(f[b"length"] - len(data))
    return bytes(out)


c = Client(host="127.0.0.1", port=port)
t = c.get_torrent(1, arguments=["id", "name", "pieces", "pieceCount", "trackerStats", "percentDone"])
assert t.percent_done == 1.0, t.percent_done

# pieces: Transmission's base64 bitfield, piece 0 the high bit.
bits = base64.b64decode(t.pieces)
assert len(bits) == (len(hashes) + 7) // 8, (len(bits), len(hashes))
assert t.fields["pieceCount"] == len(hashes)
have = [bool(bits[k // 8] & (0x80 >> (k % 8))) for k in range(len(hashes))]
spare = len(bits) * 8 - len(hashes)
assert spare == 0 or bits[-1] & ((1 << spare) - 1) == 0, "spare bits clear"
data = disk_bytes()
truth = [hashlib.sha1(data[k * plen:(k + 1) * plen]).digest() == h for k, h in enumerate(hashes)]
assert have == truth, (have, truth)
assert any(have) and not all(have), "a partial download: some pieces had, some not"

# tracker_stats: the .torrent's tracker, announced to with success.
stats = t.tracker_stats
assert len(stats) == 1, stats
s = stats[0]
announce = meta[b"announce"].decode()
assert s.announce == announce, (s.announce, announce)
assert s.host == announce.rsplit("/", 1)[0], s.host
assert s.tier == 0 and s.id == 0 and not s.is_backup
deadline = time.time() + 60
while not s.last_announce_succeeded and time.time() < deadline:
    time.sleep(0.2)
    s = c.get_torrent(1, arguments=["id", "trackerStats"]).tracker_stats[0]
assert s.has_announced and s.last_announce_succeeded, s.fields
assert s.last_announce_result == "Success", s.last_announce_result
now = time.time()
assert now - 600 < s.last_announce_time <= now + 5, (s.last_announce_time, now)
assert s.next_announce_time > s.last_announce_time, s.fields
assert s.announce_state == 1, s.fields
# bittern's tracker counts the seeder (and the daemon, done with what it wants).
assert s.seeder_count >= 1, s.fields
assert s.scrape == announce.replace("/announce", "/scrape"), s.scrape
print("OK")
