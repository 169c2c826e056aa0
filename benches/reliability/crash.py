#!/usr/bin/env python3
"""Crash safety: SIGKILL a `bittern download` again and again.

A `bittern seed` serves SIZE bytes on 127.0.0.1; `bittern download
--exit-on-complete --peer` fetches them at a limited rate and is killed
with SIGKILL KILLS times, then restarted each time, until it finishes.
A third of the kills land while the restarted client checks its data
at startup (it starts from a partly present file), the others at a
random moment of the transfer, early or after the 30 s resume save
(pieces are verified continuously while the data flows, so these land
among verifications). One graceful stop (SIGINT) in the middle makes the
following starts trust resume state, and one kill lands in that check.

After each kill, with the client dead:
  * every piece of the data file is hashed (independently, in Python);
  * the resume file is decoded; every piece it marks as had must be intact
    on disk ("claimed but bad" must stay 0), and so must every piece it
    would vouch for at the next start (had, and file stamps unchanged);
  * after the restart, the client's first status line past checking must
    not claim more than the intact pieces.
At the end the data must be byte-identical, and the seeder's upload count
over the file size gives the bytes re-downloaded.

    benches/reliability/crash.py [--size 256MiB] [--kills 12] [--rate 12MB/s]
    BITTERN=/path/to/bittern (default: target/release/bittern, copied)
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def size_arg(s):
    m = re.fullmatch(r"(\d+)(KiB|MiB|GiB)?", s)
    mult = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, None: 1}[m.group(2)]
    return int(m.group(1)) * mult


class Proc:
    """A child whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv):
        self.p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines = []  # (time, stream, line)
        self.lock = threading.Lock()
        for name, f in (("out", self.p.stdout), ("err", self.p.stderr)):
            threading.Thread(target=self._pump, args=(name, f), daemon=True).start()

    def _pump(self, name, f):
        for line in f:
            with self.lock:
                self.lines.append((time.time(), name, line.rstrip("\n")))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def wait_line(self, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for _, _, line in self.snapshot():
                if pred(line):
                    return line
            if self.p.poll() is not None:
                time.sleep(0.2)
                for _, _, line in self.snapshot():
                    if pred(line):
                        return line
                return None
            time.sleep(0.01)
        return None


def piece_hashes_ok(path, plen, hashes):
    """Which pieces of the file at `path` match their hashes."""
    ok = [False] * len(hashes)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return ok
    with f:
        for i, h in enumerate(hashes):
            f.seek(i * plen)
            data = f.read(plen)
            expect = plen if i < len(hashes) - 1 else None
            if expect is not None and len(data) != expect:
                break
            ok[i] = hashlib.sha1(data).digest() == h
    return ok


def read_resume(path, count):
    """(have list, file stamps) from a bittern resume file, or None."""
    try:
        b = open(path, "rb").read()
    except FileNotFoundError:
        return None
    if len(b) < 68 or b[:8] != b"BTRNRSM\0":
        return "corrupt"
    if hashlib.sha1(b[:-20]).digest() != b[-20:]:
        return "corrupt"
    pc, fc = struct.unpack_from("<QQ", b, 32)
    if pc != count:
        return "corrupt"
    bits = b[48 : 48 + (pc + 7) // 8]
    have = [bool(bits[i // 8] & (0x80 >> (i % 8))) for i in range(pc)]
    stamps = []
    off = 48 + (pc + 7) // 8
    for _ in range(fc):
        present, size, ms, mns, cs, cns, ino = struct.unpack_from("<BQqIqIQ", b, off)
        stamps.append((present, size, ms, mns, cs, cns, ino))
        off += 45
    return have, stamps


def stamp_now(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0, 0, 0, 0, 0, 0)
    return (
        1,
        st.st_size,
        st.st_mtime_ns // 10**9,
        st.st_mtime_ns % 10**9,
        st.st_ctime_ns // 10**9,
        st.st_ctime_ns % 10**9,
        st.st_ino,
    )


def torrent_pieces(bittern, torrent):
    """(piece length, list of 20-byte hashes) read from the .torrent."""
    raw = open(torrent, "rb").read()
    i = raw.index(b"6:pieces") + 8
    j = raw.index(b":", i)
    n = int(raw[i:j])
    pieces = raw[j + 1 : j + 1 + n]
    info = subprocess.run(
        [bittern, "info", "--json", torrent], capture_output=True, text=True, check=True
    ).stdout
    plen = int(re.search(r'"piece_length":\s*(\d+)', info).group(1))
    return plen, [pieces[k : k + 20] for k in range(0, n, 20)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=size_arg, default=256 << 20)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--rate", default="1400KB/s")
    ap.add_argument("--piece-length", default="256KiB")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    work = tempfile.mkdtemp(prefix="bittern-crash-", dir="/var/tmp")
    src_bin = os.environ.get("BITTERN", os.path.join(ROOT, "target/release/bittern"))
    bittern = os.path.join(work, "bittern")
    shutil.copy(src_bin, bittern)
    src = os.path.join(work, "src")
    dst = os.path.join(work, "dst")
    os.makedirs(src)
    os.makedirs(dst)
    name = "crash.bin"
    data_path = os.path.join(src, name)
    r = random.Random(args.seed)
    with open(data_path, "wb") as f:
        left = args.size
        while left:
            n = min(left, 1 << 20)
            f.write(r.randbytes(n))
            left -= n
    torrent = os.path.join(work, "crash.torrent")
    subprocess.run(
        [bittern, "create", "-q", data_path, "-o", torrent, "--piece-length", args.piece_length],
        check=True,
        capture_output=True,
    )
    plen, hashes = torrent_pieces(bittern, torrent)
    count = len(hashes)
    # A partly present file: the first ~40% already there, so the first
    # startup check takes a while.
    part = (args.size * 4 // 10) // plen * plen
    with open(data_path, "rb") as s, open(os.path.join(dst, name), "wb") as d:
        d.write(s.read(part))
    out_path = os.path.join(dst, name)
    info_hash = re.search(
        r'"info_hash":\s*"([0-9a-f]{40})"',
        subprocess.run([bittern, "info", "--json", torrent], capture_output=True, text=True).stdout,
    ).group(1)
    resume = os.path.join(dst, ".bittern", info_hash + ".resume")

    seeder = Proc([bittern, "seed", torrent, "-d", src, "-p", "0", "--bind", "127.0.0.1", "-q"])
    line = seeder.wait_line(lambda l: l.startswith("listening on"), 30)
    if not line:
        sys.exit(f"seeder did not start: {seeder.snapshot()}")
    port = line.rsplit(":", 1)[1]
    seeder.wait_line(lambda l: "verified, seeding" in l, 60)
    print(f"work dir {work}; {args.size} bytes, {count} pieces of {plen}; seeder on port {port}")

    argv = [
        bittern, "download", torrent, "-d", dst, "-p", "0", "--bind", "127.0.0.1",
        "--peer", f"127.0.0.1:{port}", "--exit-on-complete", "--download-limit", args.rate,
        "--status-interval", "100ms",
    ]
    env = dict(os.environ, RUST_LOG="bittern_engine=debug")
    failures = []
    kills = 0
    # c: kill during the startup check; s: early in the transfer; long:
    # after a resume save; sigint: a graceful stop (not a kill).
    base = ["checking", "short", "long", "checking", "short", "long", "sigint",
            "checking", "short", "long", "checking", "short", "short"]
    plan = base[: args.kills + (1 if args.kills > 6 else 0)]
    kinds = {"checking": 0, "transfer": 0}
    run = 0
    claims = []
    last_good = 0
    expect_vouched = 0
    while True:
        run += 1
        t0 = time.time()
        leech = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        p = Proc.__new__(Proc)
        p.p, p.lines, p.lock = leech, [], threading.Lock()
        for nm, f in (("out", leech.stdout), ("err", leech.stderr)):
            threading.Thread(target=p._pump, args=(nm, f), daemon=True).start()
        if run > 1:
            # What did the restarted client claim? The engine logs the
            # pieces its resume state vouches for (the rest it hashes).
            v = p.wait_line(lambda l: "vouches for" in l or "checking data" in l, 20)
            vl = [l for _, _, l in p.snapshot() if "vouches for" in l]
            if vl:
                n = int(re.search(r"vouches for (\d+)", vl[0]).group(1))
                if n != expect_vouched:
                    failures.append(f"run {run}: client vouched {n}, expected {expect_vouched}")
                claims.append(n)
        kind = plan[run - 1] if run - 1 < len(plan) else None
        want_kill = kind is not None
        killed_in = None
        if want_kill and kind == "checking":
            # Kill while the startup check runs: right after the first
            # "checking data" line, plus a random few ms.
            seen = p.wait_line(lambda l: "checking data" in l, 20)
            if seen:
                time.sleep(rnd.uniform(0.0, 0.08))
                still = [l for _, _, l in p.snapshot() if "crash.bin:" in l]
                killed_in = "checking" if still and "checking data" in still[-1] else "after-check"
            else:
                killed_in = "no-check-seen"
        elif want_kill:
            first = p.wait_line(lambda l: "crash.bin:" in l and "checking" not in l, 30)
            if first and run > 1:
                pct = float(re.search(r"([\d.]+)%", first).group(1))
                # A status line comes every 100 ms: allow what the rate
                # limit lets through in half a second past the check.
                slack = 100.0 * (16e6 * 0.5 / plen) / count
                if pct > 100.0 * last_good / count + slack + 0.1:
                    failures.append(f"run {run}: claims {pct}% after restart, only {last_good}/{count} intact")
            if kind == "long":
                # Past the 30 s resume save, so resume state exists.
                time.sleep(rnd.uniform(31.0, 36.0))
            else:
                time.sleep(rnd.uniform(0.3, 2.5))
            killed_in = "transfer" if kind != "sigint" else "sigint"
        if want_kill and leech.poll() is None:
            if kind == "sigint":
                # A graceful stop: resume state written, so the next start
                # vouches for pieces instead of hashing them.
                leech.send_signal(signal.SIGINT)
                leech.wait(timeout=30)
                print(f"graceful stop (SIGINT) in run {run}: exit {leech.returncode}", flush=True)
            else:
                leech.send_signal(signal.SIGKILL)
                leech.wait()
                kills += 1
                kinds["checking" if killed_in == "checking" else "transfer"] += 1
            label = "stop   " if kind == "sigint" else f"kill {kills:2d}"
            time.sleep(0.3)
            # Independent look at the killed state.
            ok = piece_hashes_ok(out_path, plen, hashes)
            good = sum(ok)
            rs = read_resume(resume, count)
            claimed_bad = vouch_bad = vouched = 0
            if rs == "corrupt":
                failures.append(f"kill {kills}: resume file corrupt after SIGKILL")
            elif rs:
                have, stamps = rs
                now = stamp_now(out_path)
                fresh = len(stamps) == 1 and stamps[0] == now and now[1] >= args.size
                claimed_bad = sum(1 for i in range(count) if have[i] and not ok[i])
                vouched = sum(have) if fresh else 0
                vouch_bad = claimed_bad if fresh else 0
            if vouch_bad or claimed_bad:
                failures.append(f"after {label}: resume marks {claimed_bad} bad pieces as had")
            print(
                f"{label} ({killed_in}, after {time.time() - t0:.1f}s): "
                f"{good}/{count} pieces intact on disk; resume marks "
                f"{sum(rs[0]) if isinstance(rs, tuple) else 0} had, {claimed_bad} of them bad; "
                f"would vouch for {vouched}",
                flush=True,
            )
            # Restart next loop; check its first post-check claim then.
            expect_vouched = vouched
            last_good = good
            continue
        # Final run: let it finish.
        leech.wait(timeout=900)
        lines = [l for _, _, l in p.snapshot()]
        summary = [l for l in lines if l.startswith("crash.bin: downloaded")]
        print(f"final run {run}: exit {leech.returncode} after {time.time() - t0:.1f}s; {summary}")
        if leech.returncode != 0:
            failures.append(f"final run exited {leech.returncode}: {lines[-5:]}")
        break

    # Checking what each restart claimed needs the runs' logs; the final
    # check below covers data. Stop the seeder and read its upload count.
    seeder.p.send_signal(signal.SIGINT)
    seeder.p.wait(timeout=30)
    up = [l for _, _, l in seeder.snapshot() if "uploaded" in l]
    m = re.search(r"uploaded (\d+) bytes", up[-1] if up else "")
    uploaded = int(m.group(1)) if m else -1
    same = subprocess.run(["cmp", data_path, out_path]).returncode == 0
    if not same:
        failures.append("final data differs")
    needed = args.size - part
    print(
        f"RESULT: kills {kills} (during checking {kinds['checking']}, during transfer "
        f"{kinds['transfer']}); data identical: {same}; seeder uploaded {uploaded} bytes = "
        f"{uploaded / args.size:.3f} x file size, {uploaded / needed:.3f} x the {needed} bytes missing at start"
    )
    print(f"vouched-by-resume counts at each restart: {claims}")
    for f in failures:
        print("FAIL:", f)
    if not failures:
        shutil.rmtree(work)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
