"""Deterministic benchmark data and torrents.

file1g.bin: 1 GiB single file. dir256/: 256 MiB in 1,000 files of mixed
sizes (log-uniform from 1 byte to ~8 MiB, scaled to exactly 256 MiB) in 20
subdirectories. Both come from seeded PRNGs (random.Random.randbytes), so
the bytes are the same on every machine with the same Python; a manifest of
SHA-256 digests is written next to the data and checked before reuse.
"""

import hashlib
import math
import os
import random
import shutil

MIB = 1024 * 1024
FILE_NAME = "file1g.bin"
FILE_SIZE = 1024 * MIB
DIR_NAME = "dir256"
DIR_SIZE = 256 * MIB
DIR_FILES = 1000
CHUNK = 4 * MIB


def _write_random(path, size, rng):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, CHUNK)
            f.write(rng.randbytes(n))
            left -= n


def dir_sizes():
    rng = random.Random(0xB177E2)
    raw = [math.exp(rng.uniform(0, math.log(8 * MIB))) for _ in range(DIR_FILES)]
    scale = DIR_SIZE / sum(raw)
    sizes = [max(1, int(r * scale)) for r in raw]
    sizes[-1] += DIR_SIZE - sum(sizes)
    if sizes[-1] < 1:
        raise ValueError("bad size plan")
    return sizes


def dir_files():
    """(relative path, size) of every file of dir256, in creation order."""
    out = []
    for i, size in enumerate(dir_sizes()):
        out.append((os.path.join("d%02d" % (i % 20), "f%04d.bin" % i), size))
    return out


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return h.hexdigest()
            h.update(b)


def _manifest(root, rel_files):
    return "".join("%s %s\n" % (_digest(os.path.join(root, r)), r) for r in rel_files)


def ensure_data(data_dir, log):
    """Generates the data sets under data_dir unless a valid copy is there."""
    os.makedirs(data_dir, exist_ok=True)
    sets = [
        (FILE_NAME, [(FILE_NAME, FILE_SIZE)], 0xF11E1),
        (DIR_NAME, [(os.path.join(DIR_NAME, r), s) for r, s in dir_files()], 0xD1256),
    ]
    for name, files, seed in sets:
        mpath = os.path.join(data_dir, name + ".manifest")
        if os.path.exists(mpath) and all(
                os.path.isfile(os.path.join(data_dir, r))
                and os.path.getsize(os.path.join(data_dir, r)) == s for r, s in files):
            continue
        log("generating %s (%d files) in %s" % (name, len(files), data_dir))
        target = os.path.join(data_dir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        rng = random.Random(seed)
        for rel, size in files:
            path = os.path.join(data_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_random(path, size, rng)
        with open(mpath, "w") as f:
            f.write(_manifest(data_dir, [r for r, _ in files]))


def warm(path):
    """Reads every byte under path once so it sits in the page cache."""
    paths = [path] if os.path.isfile(path) else [
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for p in paths:
        with open(p, "rb") as f:
            while f.read(CHUNK):
                pass
