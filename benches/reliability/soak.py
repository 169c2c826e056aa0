#!/usr/bin/env python3
"""Soak: a long-lived seeder and tracker, leechers joining and leaving.

One `bittern tracker` and one `bittern seed` of two torrents (a single
file and a multi-file set) stay up for the whole run. Leecher processes
(`bittern download` of both torrents) come and go, at most MAX at once,
each with a random fate: finish and exit, finish and seed for a while,
get SIGKILLed, or get SIGTERMed at a random moment. Killed or stopped
leechers are restarted later on the same directory, so every leecher
directory must end complete. At the end every directory is compared byte
for byte with the source. The seeder's and tracker's threads, open fds
and RSS are sampled from /proc every SAMPLE seconds, and compared with
their baseline once the leechers are gone.

    benches/reliability/soak.py [--minutes 10] [--max 4] [--dirs 8]
    BITTERN=/path/to/bittern (default: target/release/bittern, copied)
"""

import argparse
import filecmp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def proc_figures(pid):
    """(threads, fds, RSS KiB) of a live process."""
    try:
        st = open(f"/proc/{pid}/status").read()
        threads = int(st.split("Threads:")[1].split()[0])
        rss = int(st.split("VmRSS:")[1].split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return threads, fds, rss
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


class Child:
    def __init__(self, argv, log):
        self.log = open(log, "a")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)


def wait_in_log(path, needle, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            text = open(path).read()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            if needle in line:
                return line
        time.sleep(0.1)
    sys.exit(f"no {needle!r} in {path} after {timeout}s:\n{text[-2000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--max", type=int, default=4, help="leechers at once")
    ap.add_argument("--dirs", type=int, default=8, help="leecher directories")
    ap.add_argument("--sample", type=float, default=30)
    ap.add_argument("--rate", default="3MB/s", help="per-leecher download limit")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    work = tempfile.mkdtemp(prefix="bittern-soak-", dir="/var/tmp")
    bittern = os.path.join(work, "bittern")
    shutil.copy(os.environ.get("BITTERN", os.path.join(ROOT, "target/release/bittern")), bittern)
    src = os.path.join(work, "src")
    os.makedirs(os.path.join(src, "set", "sub"))
    r = random.Random(args.seed)
    with open(os.path.join(src, "big.bin"), "wb") as f:
        f.write(r.randbytes(48 << 20))
    for k in range(24):
        sub = "sub/" if k % 3 == 0 else ""
        with open(os.path.join(src, "set", f"{sub}f{k:02d}.dat"), "wb") as f:
            f.write(r.randbytes(r.randint(1, 900_000)))
    logs = os.path.join(work, "logs")
    os.makedirs(logs)

    tracker = Child([bittern, "tracker", "--bind", "127.0.0.1", "-p", "0"], f"{logs}/tracker.log")
    url = wait_in_log(f"{logs}/tracker.log", "announce URL: ", 20).split("announce URL: ")[1].strip()
    torrents = []
    for name, plen in (("big.bin", "256KiB"), ("set", "64KiB")):
        t = os.path.join(work, name + ".torrent")
        subprocess.run(
            [bittern, "create", "-q", os.path.join(src, name), "-o", t, "-t", url,
             "--piece-length", plen],
            check=True, capture_output=True,
        )
        torrents.append(t)
    seeder = Child(
        [bittern, "seed", *torrents, "-d", src, "--bind", "127.0.0.1", "-p", "0",
         "--status-interval", "60s"],
        f"{logs}/seeder.log",
    )
    port = wait_in_log(f"{logs}/seeder.log", "listening on", 20).rsplit(":", 1)[1].strip()
    wait_in_log(f"{logs}/seeder.log", "set: verified, seeding", 60)
    time.sleep(2)
    base = {"seeder": proc_figures(seeder.p.pid), "tracker": proc_figures(tracker.p.pid)}
    print(f"work dir {work}; tracker {url}; seeder port {port}", flush=True)
    print(f"baseline (threads, fds, RSS KiB): {base}", flush=True)

    dirs = [os.path.join(work, f"leech{k}") for k in range(args.dirs)]
    done = set()  # directories that finished and were verified by bittern
    running = {}  # dir -> (Child, fate, deadline, started)
    stats = {"started": 0, "finished": 0, "killed": 0, "terminated": 0, "seeded": 0, "failed": 0}
    samples = []
    start = time.time()
    end = start + args.minutes * 60
    next_sample = start

    def launch(d):
        fate = rnd.choice(["finish", "finish-seed", "kill", "kill", "term"])
        extra = ["--exit-on-complete"] if fate in ("finish", "kill", "term") else ["--seed-time", "20s"]
        argv = [bittern, "download", *torrents, "-d", d, "--bind", "127.0.0.1", "-p", "0",
                "--peer", f"127.0.0.1:{port}", "--download-limit", args.rate,
                "--status-interval", "30s", *extra]
        c = Child(argv, f"{logs}/{os.path.basename(d)}.log")
        deadline = time.time() + (rnd.uniform(1.0, 12.0) if fate in ("kill", "term") else 1e9)
        running[d] = (c, fate, deadline, time.time())
        stats["started"] += 1

    while True:
        now = time.time()
        # Reap and act on fates.
        for d, (c, fate, deadline, t0) in list(running.items()):
            rc = c.p.poll()
            if rc is not None:
                del running[d]
                if rc == 0:
                    done.add(d)
                    stats["seeded" if fate == "finish-seed" else "finished"] += 1
                elif rc in (-signal.SIGKILL, 130):
                    pass
                else:
                    stats["failed"] += 1
                    print(f"leecher {d} exited {rc}; see its log", flush=True)
                continue
            if now >= deadline:
                if fate == "kill":
                    c.p.send_signal(signal.SIGKILL)
                    stats["killed"] += 1
                else:
                    c.p.send_signal(signal.SIGTERM)
                    stats["terminated"] += 1
                c.p.wait()
                del running[d]
        if now < end:
            # Keep MAX leechers busy; finished directories start over
            # (wiped) so the swarm keeps moving data.
            idle = [d for d in dirs if d not in running]
            rnd.shuffle(idle)
            for d in idle[: max(0, args.max - len(running))]:
                if d in done and rnd.random() < 0.5:
                    shutil.rmtree(d, ignore_errors=True)
                    done.discard(d)
                launch(d)
        elif not running:
            # Drain: every directory must end complete.
            missing = [d for d in dirs if d not in done and os.path.exists(d)]
            if not missing:
                break
            for d in missing[: args.max]:
                argv = [bittern, "download", *torrents, "-d", d, "--bind", "127.0.0.1", "-p", "0",
                        "--peer", f"127.0.0.1:{port}", "--exit-on-complete"]
                c = Child(argv, f"{logs}/{os.path.basename(d)}.log")
                running[d] = (c, "finish", 1e18, now)
        if now >= next_sample:
            s = proc_figures(seeder.p.pid)
            t = proc_figures(tracker.p.pid)
            samples.append((round(now - start), s, t, len(running)))
            print(f"t={round(now - start):5d}s seeder {s} tracker {t} leechers {len(running)} {stats}", flush=True)
            next_sample = now + args.sample
        time.sleep(0.2)

    # Quiet period: the seeder's peer threads and sockets must go away.
    time.sleep(15)
    final = {"seeder": proc_figures(seeder.p.pid), "tracker": proc_figures(tracker.p.pid)}
    bad = []
    names = []
    for base_dir, _, files in os.walk(src):
        for f in files:
            names.append(os.path.relpath(os.path.join(base_dir, f), src))
    for d in dirs:
        if not os.path.exists(d):
            continue
        for n in names:
            if not filecmp.cmp(os.path.join(src, n), os.path.join(d, n), shallow=False):
                bad.append(os.path.join(d, n))
    seeder.p.send_signal(signal.SIGTERM)
    tracker.p.send_signal(signal.SIGTERM)
    seeder.p.wait(timeout=30)
    tracker.p.wait(timeout=30)
    peak = max((s[1][2] for s in samples if s[1]), default=0)
    peak_threads = max((s[1][0] for s in samples if s[1]), default=0)
    peak_fds = max((s[1][1] for s in samples if s[1]), default=0)
    print(f"duration {time.time() - start:.0f}s; leechers {stats}")
    print(f"seeder (threads, fds, RSS KiB): baseline {base['seeder']}, peak threads {peak_threads}, "
          f"peak fds {peak_fds}, peak RSS {peak}, after the leechers left {final['seeder']}")
    print(f"tracker: baseline {base['tracker']}, after {final['tracker']}")
    verified = [d for d in dirs if os.path.exists(d)]
    print(f"leecher directories compared: {len(verified)}, files differing: {len(bad)} {bad[:5]}")
    ok = not bad and stats["failed"] == 0 and final["seeder"][0] <= base["seeder"][0] + 2 \
        and final["seeder"][1] <= base["seeder"][1] + 2
    print("SOAK OK" if ok else "SOAK FAILED")
    if ok:
        shutil.rmtree(work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
