"""Side-by-side swarm benchmark: bittern against libtorrent, aria2c and
transmission-cli on loopback. Run it through benches/swarm/run.sh, which
builds bittern and enters a network namespace that holds only `lo`.

Usage: /usr/bin/python3 bench.py [--quick] [--runs N] [--runs-big N]
           [--only REGEX] [--sets REGEX] [--cache DIR] [--bittern PATH] [--results FILE]
           [--netns-note TEXT] [--no-transfers] [--no-tools] [--clean]
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import data
import report

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import write_results  # noqa: E402
from clients import SETTINGS_NOTES, Aria2, Bittern, Libtorrent, Transmission, PY, LT_NODE
from procs import Proc, Watch, port_listening, run_timed

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TRACKER_PORT = 6969
ANNOUNCE = "http://127.0.0.1:%d/announce" % TRACKER_PORT
PIECES = [("256KiB", 256 * 1024, 18), ("4MiB", 4 * 1024 * 1024, 22)]
SETS = [(data.FILE_NAME, data.FILE_SIZE, "1 GiB single file"),
        (data.DIR_NAME, data.DIR_SIZE, "256 MiB, 1,000 files")]

PAIRS = [  # label, seeder, leecher, number of leechers
    ("bittern→bittern", "bittern", "bittern", 1),
    ("libtorrent→libtorrent", "libtorrent", "libtorrent", 1),
    ("libtorrent→bittern", "libtorrent", "bittern", 1),
    ("bittern→libtorrent", "bittern", "libtorrent", 1),
    ("bittern→aria2c", "bittern", "aria2c", 1),
    ("libtorrent→aria2c", "libtorrent", "aria2c", 1),
    ("libtorrent-reqq→aria2c", "libtorrent-reqq", "aria2c", 1),
    ("bittern→transmission", "bittern", "transmission", 1),
    ("libtorrent→transmission", "libtorrent", "transmission", 1),
    ("libtorrent-reqq→transmission", "libtorrent-reqq", "transmission", 1),
    ("bittern→4×bittern", "bittern", "bittern", 4),
    ("libtorrent→4×libtorrent", "libtorrent", "libtorrent", 4),
    ("bittern-rc4→bittern-rc4", "bittern-rc4", "bittern-rc4", 1),
    ("libtorrent-rc4→libtorrent-rc4", "libtorrent-rc4", "libtorrent-rc4", 1),
    ("bittern-utp→bittern-utp", "bittern-utp", "bittern-utp", 1),
    ("bittern-utp-nogso→bittern-utp-nogso", "bittern-utp-nogso", "bittern-utp-nogso", 1),
    ("bittern-utp-nogro→bittern-utp-nogro", "bittern-utp-nogro", "bittern-utp-nogro", 1),
    ("libtorrent-utp→libtorrent-utp", "libtorrent-utp", "libtorrent-utp", 1),
]
CORE = PAIRS[:4]
# With `--bittern-old`: the older build's own transfers, beside the others.
OLD_PAIRS = [
    ("bittern-old→bittern-old", "bittern-old", "bittern-old", 1),
    ("bittern-old→4×bittern-old", "bittern-old", "bittern-old", 4),
    ("bittern-old-utp→bittern-old-utp", "bittern-old-utp", "bittern-old-utp", 1),
]
# With `--v2`: the core transfers again on a v2-only torrent of the same
# data and piece size (`bittern create --v2`), beside their v1 runs.
V2 = " (v2)"
V2_PAIRS = [(label + V2, s, l, n) for label, s, l, n in CORE]
# With both: the older build's one-leecher transfer on the v2 torrent too.
OLD_V2_PAIRS = [(label + V2, s, l, n) for label, s, l, n in OLD_PAIRS if n == 1]


def prefault(nbytes):
    """Touches and frees anonymous memory for what the coming transfer
    will write (plus a quarter and 256 MiB), outside its timed window.
    This VM hands free memory back to its host a few seconds after it is
    freed (free page reporting) and takes 2-3 s of system time per GiB to
    get it back on first touch, against about 0.25 s for memory freed a
    moment ago. Without this step a transfer's cost depended on how much
    memory the transfers before it had freed, and how long ago: a
    four-leecher transfer right after a one-leecher one wrote 3 GiB into
    memory the host had taken back, while the next one reused the 4 GiB
    it had just freed. After it, each transfer starts with enough freshly
    freed memory, whichever client runs and whatever ran before."""
    n = int(nbytes * 1.25) + (256 << 20)
    code = ("b = bytearray(%d)\nm = memoryview(b)\n"
            "m[::4096] = b'\\x01' * len(range(0, %d, 4096))\n" % (n, n))
    subprocess.run([sys.executable, "-c", code], check=True)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class Ports:
    def __init__(self):
        self.next = 21000

    def take(self):
        self.next = self.next + 1 if self.next < 60000 else 21000
        return self.next


def machine_facts():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    model = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    avail = re.search(r"MemAvailable:\s*(\d+)", read("/proc/meminfo"))
    total = re.search(r"MemTotal:\s*(\d+)", read("/proc/meminfo"))
    return {
        "nproc": os.cpu_count(),
        "cpu": model.group(1) if model else "?",
        "kernel": platform.release(),
        "mem_total_gib": int(total.group(1)) / 2**20 if total else 0,
        "mem_available_gib": int(avail.group(1)) / 2**20 if avail else 0,
        "loadavg": read("/proc/loadavg").split()[:3],
    }


def versions():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    return {
        "libtorrent": out([PY, "-c", "import libtorrent as lt; print(lt.__version__)"]),
        "aria2c": out(["aria2c", "--version"]).splitlines()[0] if out(["aria2c", "--version"]) else "?",
        "transmission-cli": out(["dpkg-query", "-W", "-f=${Version}", "transmission-cli"]),
        "mktorrent": out(["dpkg-query", "-W", "-f=${Version}", "mktorrent"]),
        "git": out(["git", "-C", REPO, "describe", "--always", "--dirty"]),
    }


def lt_hash(torrent, v2=False):
    """libtorrent's info hash of a torrent: the v1 (SHA-1) one, or with
    `v2` the full SHA-256 one."""
    r = subprocess.run([PY, LT_NODE, "hash", torrent], capture_output=True, text=True, timeout=60)
    m = re.search(r"info_hash_v2 ([0-9a-f]{64})" if v2 else r"info_hash ([0-9a-f]{40})", r.stdout)
    return m.group(1) if m else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.ports = Ports()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.cache = args.cache
        self.data_dir = os.path.join(self.cache, "data")
        self.run_dir = os.path.join(self.cache, "runs", stamp)
        self.logs = os.path.join(self.run_dir, "logs")
        self.work = os.path.join(self.run_dir, "work")
        self.trash = os.path.join(self.work, "trash")
        self.discarded = 0
        os.makedirs(self.logs)
        os.makedirs(self.trash)
        # A private copy: the tree's binary may be rebuilt while we run.
        self.bin = os.path.join(self.run_dir, "bittern")
        shutil.copy2(args.bittern, self.bin)
        self.clients = {"bittern": Bittern(self.bin), "libtorrent": Libtorrent(),
                        "libtorrent-reqq": Libtorrent(20000), "aria2c": Aria2(),
                        "transmission": Transmission(),
                        "bittern-rc4": Bittern(self.bin, rc4=True),
                        "libtorrent-rc4": Libtorrent(rc4=True),
                        "bittern-utp": Bittern(self.bin, utp=True),
                        "bittern-utp-nogso": Bittern(self.bin, utp=True, gso=False),
                        "bittern-utp-nogro": Bittern(self.bin, utp=True, gro=False),
                        "libtorrent-utp": Libtorrent(utp=True)}
        # `--bittern-old PATH`: an older build as its own client, so a
        # change can be compared with what came before in the same run.
        if args.bittern_old:
            self.old_bin = os.path.join(self.run_dir, "bittern-old")
            shutil.copy2(args.bittern_old, self.old_bin)
            self.clients["bittern-old"] = Bittern(self.old_bin, name="bittern-old")
            self.clients["bittern-old-utp"] = Bittern(self.old_bin, utp=True,
                                                      name="bittern-old-utp")
        self.failures = []
        self.notes = []

    # ---------------------------------------------------------------- torrents
    def torrent(self, name, piece_label, v2=False):
        return os.path.join(self.cache, "torrents", "%s-%s%s.torrent" % (
            name, piece_label, "-v2" if v2 else ""))

    def make_torrents(self):
        os.makedirs(os.path.join(self.cache, "torrents"), exist_ok=True)
        self.hashes = {}
        for name, _, _ in SETS:
            for plabel, _, _ in PIECES:
                t = self.torrent(name, plabel)
                r = subprocess.run([self.bin, "create", os.path.join(self.data_dir, name), "-o", t,
                                    "-t", ANNOUNCE, "--piece-length", plabel, "-f"],
                                   capture_output=True, text=True, timeout=300)
                m = re.search(r"info hash:\s*([0-9a-f]{40})", r.stdout)
                if r.returncode != 0 or not m:
                    raise SystemExit("bittern create failed: %s %s" % (r.stdout, r.stderr))
                lth = lt_hash(t)
                self.hashes[(name, plabel)] = (m.group(1), lth)
                if lth != m.group(1):
                    self.notes.append("libtorrent computes info hash %s for %s but bittern "
                                      "printed %s" % (lth, t, m.group(1)))
                log("torrent", os.path.basename(t), m.group(1), "libtorrent agrees" if lth == m.group(1) else "MISMATCH")
                if self.args.v2:
                    self.make_v2_torrent(name, plabel)

    def make_v2_torrent(self, name, plabel):
        """A v2-only torrent of the same data and piece size; libtorrent
        must compute the same (full SHA-256) v2 info hash."""
        t = self.torrent(name, plabel, v2=True)
        r = subprocess.run([self.bin, "create", os.path.join(self.data_dir, name), "-o", t,
                            "-t", ANNOUNCE, "--piece-length", plabel, "-f", "--v2"],
                           capture_output=True, text=True, timeout=600)
        m = re.search(r"info hash:\s*([0-9a-f]{40})", r.stdout)
        m2 = re.search(r"v2 hash:\s*([0-9a-f]{64})", r.stdout)
        if r.returncode != 0 or not m or not m2:
            raise SystemExit("bittern create --v2 failed: %s %s" % (r.stdout, r.stderr))
        lth = lt_hash(t, v2=True)
        # The tracker and the handshake see the v2 hash truncated to 20 bytes.
        self.hashes[(name, plabel, "v2")] = (m.group(1), lth)
        if lth != m2.group(1):
            self.notes.append("libtorrent computes v2 info hash %s for %s but bittern "
                              "printed %s" % (lth, t, m2.group(1)))
        log("torrent", os.path.basename(t), m2.group(1),
            "libtorrent agrees" if lth == m2.group(1) else "MISMATCH")

    # ---------------------------------------------------------------- tracker
    def scrape_complete(self, info_hash):
        q = urllib.parse.quote_from_bytes(bytes.fromhex(info_hash))
        try:
            body = urllib.request.urlopen("http://127.0.0.1:%d/scrape?info_hash=%s" % (TRACKER_PORT, q),
                                          timeout=2).read()
        except OSError:
            return -1
        m = re.search(rb"8:completei(\d+)e", body)
        return int(m.group(1)) if m else -1

    # ---------------------------------------------------------------- transfers
    def transfer_once(self, pair, name, size, plabel, i):
        label, skind, lkind, n = pair
        key = "%s-%s-%s" % (name, plabel, re.sub(r"[^a-z0-9]+", "_", label.replace("→", "-to-")))
        logdir = os.path.join(self.logs, key, "run%d" % i)
        scratch = os.path.join(self.work, key)
        self.discard(scratch)
        os.makedirs(logdir)
        os.makedirs(scratch)
        v2 = label.endswith(V2)
        torrent = self.torrent(name, plabel, v2)
        ih = self.hashes[(name, plabel, "v2") if v2 else (name, plabel)][0]
        seeder_c, leech_c = self.clients[skind], self.clients[lkind]
        w = Watch()
        result = {"ok": False, "logdir": logdir, "label": label}
        timeout = (30 + size / 4e6) if n == 1 else (60 + n * size / 16e6)
        try:
            tr = w.add(Proc("tracker", [self.bin, "-v", "tracker", "-p", TRACKER_PORT, "--bind",
                                        "127.0.0.1", "--interval", "30s"], logdir))
            if not w.until(lambda: port_listening(TRACKER_PORT) or not tr.alive(), time.monotonic() + 10):
                raise RuntimeError("tracker did not start")
            lports = [self.ports.take() for _ in range(n)]
            sport = self.ports.take()
            saves = [os.path.join(scratch, "leech%d" % k) for k in range(n)]
            for s in saves:
                os.makedirs(s)
            leechers = []
            # A leecher the seeder must dial (transmission-cli) starts
            # first, and the clock with it. It sends its first `interested`
            # at its first rechoke, 10 s after its torrent starts, whoever
            # the peer is and however soon it connected; with the clock at
            # "seeder ready", a seeder that checks its data faster would
            # start its clock earlier and so wait longer.
            seeder_connects = getattr(leech_c, "seeder_connects", False)
            t_leech = None
            if seeder_connects:
                prefault(n * size)
                t_leech = time.monotonic()
                for k in range(n):
                    leechers.append(w.add(leech_c.leech(torrent, saves[k], lports[k], sport, logdir,
                                                        "leecher%d" % k, scratch)))
                if not w.until(lambda: all(port_listening(p) for p in lports), time.monotonic() + 20):
                    raise RuntimeError("leecher did not start listening")
            seeder = w.add(seeder_c.seed(torrent, self.data_dir, sport,
                                         lports if seeder_connects else [], logdir, "seeder"))
            if not w.until(lambda: seeder_c.ready(seeder) or not seeder.alive(), time.monotonic() + 300):
                raise RuntimeError("seeder not ready in 300 s")
            if not seeder.alive():
                raise RuntimeError("seeder exited with %s before ready" % seeder.exit_code)
            if getattr(leech_c, "needs_tracker_seed", False):
                if not w.until(lambda: self.scrape_complete(ih) >= 1, time.monotonic() + 15):
                    raise RuntimeError("seeder never showed up at the tracker")
            if not seeder_connects:
                prefault(n * size)
            t0 = time.monotonic() if t_leech is None else t_leech
            seeder.peak_anon = seeder.peak_file = 0
            s_cpu0 = seeder.cpu_now()
            s_split0 = seeder.cpu_now_split()
            if not seeder_connects:
                for k in range(n):
                    leechers.append(w.add(leech_c.leech(torrent, saves[k], lports[k], sport, logdir,
                                                        "leecher%d" % k, scratch)))
            done_at, cpu_at, split_at = {}, {}, {}

            def check():
                for k, p in enumerate(leechers):
                    if k not in done_at and leech_c.complete(p):
                        done_at[k] = p.t_exit if p.t_exit else time.monotonic()
                        cpu_at[k] = p.cpu_total()
                        split_at[k] = p.cpu_now_split()
                    elif k not in done_at and leech_c.failed(p):
                        raise RuntimeError("leecher%d exited with code %s" % (k, p.exit_code))
                if not seeder.alive():
                    raise RuntimeError("seeder exited with code %s" % seeder.exit_code)
                return len(done_at) == n
            if not w.until(check, t0 + timeout):
                raise RuntimeError("timeout after %.0f s (%d of %d leechers complete)"
                                   % (timeout, len(done_at), n))
            s_cpu1 = seeder.cpu_now()
            s_split1 = seeder.cpu_now_split()
            wall = max(done_at.values()) - t0
            result.update(wall=wall, mbps=n * size / wall / report.MB,
                          lcpu=sum(cpu_at.values()), scpu=s_cpu1 - s_cpu0,
                          lanon=max(p.peak_anon for p in leechers),
                          lfile=max(p.peak_file for p in leechers),
                          sanon=seeder.peak_anon, sfile=seeder.peak_file,
                          luser=sum(u for u, _ in split_at.values()),
                          lsys=sum(y for _, y in split_at.values()),
                          suser=s_split1[0] - s_split0[0], ssys=s_split1[1] - s_split0[1])
            w.kill_all()
            bad = [k for k in range(n) if not self.same_data(name, saves[k])]
            if bad:
                raise RuntimeError("leecher(s) %s finished with wrong or missing data" % bad)
            result["ok"] = True
        except RuntimeError as e:
            result["error"] = str(e)
            self.record_failure(label, name, plabel, i, str(e), w, logdir)
        finally:
            w.kill_all()
            self.discard(scratch)
        return result

    def discard(self, scratch):
        """Frees a finished run's downloads but keeps their inodes until the
        benchmark ends: every file is truncated to nothing (its blocks and
        page cache are freed, as a deletion would) and the tree is moved to
        the trash, deleted at exit. Deleting at once would cost every later
        run: on an ext4 without a journal (this VM's root) the inode
        allocator skips each inode freed in the last 1-6 minutes, one
        buffer lookup per skipped inode, so after a few runs had deleted
        thousands of files, creating a file took about a millisecond and
        a 1,000-file leecher spent up to a CPU-second in the kernel before
        it wrote a byte, a cost that depended on how many files the runs
        before it had deleted, not on the client."""
        if not os.path.lexists(scratch):
            return
        for root, _dirs, files in os.walk(scratch):
            for f in files:
                path = os.path.join(root, f)
                try:
                    if os.path.isfile(path) and not os.path.islink(path):
                        os.truncate(path, 0)
                except OSError:
                    pass
        self.discarded += 1
        try:
            os.rename(scratch, os.path.join(self.trash, "%d" % self.discarded))
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)

    def same_data(self, name, save):
        src = os.path.join(self.data_dir, name)
        dst = os.path.join(save, name)
        argv = ["cmp", "-s", src, dst] if os.path.isfile(src) else ["diff", "-rq", src, dst]
        r = subprocess.run(argv, capture_output=True, timeout=300)
        return r.returncode == 0

    def record_failure(self, label, name, plabel, i, err, w, logdir):
        tails = []
        for p in w.procs:
            if p.tag == "tracker":
                continue
            tails.append((p.tag, " ".join(p.argv), p.exit_code, p.stderr_tail(15)))
        self.failures.append({"label": label, "data": "%s/%s" % (name, plabel), "run": i,
                              "error": err, "logdir": logdir, "procs": tails})
        log("FAIL", label, name, plabel, "run", i, ":", err, "logs:", logdir)

    def transfer_plan(self):
        quick = self.args.quick
        plan = []
        for name, size, desc in SETS:
            if (quick and size > data.DIR_SIZE) or not re.search(self.args.sets, name):
                continue
            big = size > data.DIR_SIZE
            for plabel, _, _ in PIECES:
                pairs = PAIRS if plabel == "256KiB" else CORE
                if self.args.bittern_old:
                    pairs = pairs + OLD_PAIRS
                if self.args.v2:
                    pairs = pairs + V2_PAIRS
                    if self.args.bittern_old:
                        pairs = pairs + OLD_V2_PAIRS
                pairs = [p for p in pairs if re.search(self.args.only, p[0])]
                runs = self.args.runs_big if big else self.args.runs
                if pairs:
                    plan.append((name, size, desc, plabel, pairs, runs))
        return plan

    def run_transfers(self):
        self.transfer_results = {}
        plan = self.transfer_plan()
        for name, size, desc, plabel, pairs, runs in plan:
            data.warm(os.path.join(self.data_dir, name))
            res = {p[0]: [] for p in pairs}
            # Round robin: run i of every transfer before run i+1, so slow
            # drifts in the machine's load hit every transfer alike. Odd
            # rounds go in reverse order: a transfer right after one that
            # freed gigabytes of page cache writes into just-freed memory,
            # which on a VM that returns free pages to its host is several
            # times cheaper than memory the host has taken back, so a fixed
            # order would favour whichever client comes second.
            for i in range(runs):
                for pair in (pairs if i % 2 == 0 else pairs[::-1]):
                    r = self.transfer_once(pair, name, size, plabel, i)
                    res[pair[0]].append(r)
                    log("%s %s %s run %d: %s" % (name, plabel, pair[0], i,
                        "%.2f s %.0f MB/s lcpu %.2f scpu %.2f anon %.0f MiB" %
                        (r["wall"], r["mbps"], r["lcpu"], r["scpu"], r["lanon"] / report.MIB)
                        if r["ok"] else "FAILED " + r.get("error", "")))
            self.transfer_results[(name, plabel)] = [(p[0], res[p[0]]) for p in pairs]
            self.save_raw()

    # ---------------------------------------------------------------- tools
    def run_tools(self):
        self.tool_results = {}
        self.tool_hashes = {}
        runs = self.args.runs
        logdir = os.path.join(self.logs, "tools")
        os.makedirs(logdir, exist_ok=True)
        out = os.path.join(self.work, "tools")
        os.makedirs(out, exist_ok=True)
        nproc = str(os.cpu_count())
        for name, size, desc in SETS:
            if (self.args.quick and size > data.DIR_SIZE) or not re.search(self.args.sets, name):
                continue
            path = os.path.join(self.data_dir, name)
            data.warm(path)
            for plabel, psize, plog in PIECES:
                tt = os.path.join(out, "t.torrent")
                cmds = [
                    ("bittern create", [self.bin, "create", path, "-o", tt, "-t", ANNOUNCE,
                                        "--piece-length", plabel, "-f", "-q"]),
                    ("mktorrent -t %s" % nproc, ["mktorrent", "-t", nproc, "-l", plog, "-a", ANNOUNCE,
                                                "-o", tt, path]),
                    ("libtorrent create", [PY, LT_NODE, "create", path, tt, psize, ANNOUNCE]),
                    ("bittern verify", [self.bin, "verify", self.torrent(name, plabel), "-d",
                                        self.data_dir, "-q"]),
                    ("libtorrent check", [PY, LT_NODE, "check", self.torrent(name, plabel),
                                          self.data_dir]),
                ]
                res = {c[0]: [] for c in cmds}
                for i in range(runs):
                    for tool, argv in cmds:
                        if os.path.exists(tt):
                            os.remove(tt)
                        tag = "%s-%s-%s-%d" % (name, plabel, tool.split()[0] + tool.split()[1], i)
                        code, wall, cpu, proc = run_timed(argv, logdir, tag, 600)
                        user, sys_s = proc.cpu_split()
                        ok = code == 0
                        if ok and ("create" in tool or tool.startswith("mktorrent")):
                            h = lt_hash(tt) if os.path.exists(tt) else None
                            self.tool_hashes[(name, plabel, tool)] = h
                        res[tool].append({"ok": ok, "wall": wall, "cpu": cpu,
                                          "user": user, "sys": sys_s,
                                          "mbps": size / wall / report.MB if ok else float("nan")})
                        if not ok:
                            self.failures.append({"label": tool, "data": "%s/%s" % (name, plabel),
                                                  "run": i, "error": "exit code %s" % code,
                                                  "logdir": logdir, "procs": []})
                self.tool_results[(name, plabel)] = [(c[0], res[c[0]]) for c in cmds]
                log("tools", name, plabel, {k: "%.3f s" % report.median_of(v, "wall")
                                            for k, v in res.items() if report.median_of(v, "wall")})
        self.save_raw()

    # ---------------------------------------------------------------- output
    def save_raw(self):
        raw = {"transfers": {"%s/%s" % k: v for k, v in getattr(self, "transfer_results", {}).items()},
               "tools": {"%s/%s" % k: v for k, v in getattr(self, "tool_results", {}).items()},
               "failures": self.failures}
        with open(os.path.join(self.run_dir, "results.json"), "w") as f:
            json.dump(raw, f, indent=1, default=str)

    def write_results(self, facts_start, facts_end, started, argv):
        a = self.args
        lines = ["# bittern swarm benchmark — results", "",
                 "Generated by `benches/swarm/run.sh` (see README, \"Benchmarks\"). "
                 "Hand-written analysis, if any, is at the end.", "",
                 "## Run", "",
                 "- date: %s (%.0f min)" % (started, (time.time() - self.t_start) / 60),
                 "- command: `%s`" % argv,
                 "- mode: %s; runs per transfer: %d for 256 MiB, %d for 1 GiB; every figure is "
                 "the median of the successful runs, with (min–max)" % (
                     "--quick" if a.quick else "full", a.runs, a.runs_big),
                 "- network: %s" % a.netns_note,
                 "- bittern: %s (git %s; binary copied to the run dir before the first run)" % (
                     a.bittern, self.versions["git"]),
                 "- libtorrent %s, %s, transmission-cli %s, mktorrent %s" % (
                     self.versions["libtorrent"], self.versions["aria2c"],
                     self.versions["transmission-cli"], self.versions["mktorrent"]),
                 "- run dir (logs, raw results.json): `%s`" % self.run_dir, "",
                 "## Machine", "",
                 "- nproc %s, CPU model %s, kernel (`uname -r`) %s" % (facts_start["nproc"], facts_start["cpu"],
                                                   facts_start["kernel"]),
                 "- memory %.1f GiB, available at start %.1f GiB" % (
                     facts_start["mem_total_gib"], facts_start["mem_available_gib"]),
                 "- load average at start %s, at end %s (shared machine: other agents build and "
                 "test on the same 2 cores, so absolute numbers are noisy; compare ratios)" % (
                     " ".join(facts_start["loadavg"]), " ".join(facts_end["loadavg"])), "",
                 "## Method", "",
                 "- Data: deterministic (seeded PRNG) `file1g.bin` (1 GiB) and `dir256/` "
                 "(256 MiB in 1,000 files of 1 B–~8 MiB in 20 folders), in the page cache "
                 "before the runs. Torrents by `bittern create` with a tracker URL "
                 "(`bittern tracker` on 127.0.0.1:%d, restarted for every run so no stale peers "
                 "linger); libtorrent computes the same info hash for each (checked every run)." % TRACKER_PORT,
                 "- A transfer's clock starts when the seeder has checked its data and says it "
                 "is seeding, right before the leecher process starts (for transmission-cli, "
                 "see below, when it starts), and stops when the leecher exits successfully after completing (bittern "
                 "`--exit-on-complete`, libtorrent after is_seeding and closing the session, "
                 "aria2c `--seed-time=0`) or, for transmission-cli, when its finish script "
                 "runs. The bytes are then compared with `cmp` / `diff -r`. A run with wrong "
                 "data counts as failed.",
                 "- Memory: writing a new file costs far more system time in memory the VM "
                 "has returned to its host than in memory freed a moment ago (`dd` of 1 GiB "
                 "to a new file: 2–3.3 s against 0.25 s; this VM reports free pages to its "
                 "host within seconds). So right before each transfer's clock starts, a "
                 "helper process touches and frees 1.25× the bytes the leechers will write "
                 "plus 256 MiB of anonymous memory, for every client alike. Until "
                 "2026-11-27 the benchmark did not, and a transfer's cost depended on what "
                 "ran before it: a four-leecher transfer after a one-leecher one wrote 3 GiB "
                 "into memory the host had taken back (the first bittern four-leecher run "
                 "of a set took 9.6–10.5 s where the others took 4–5.7 s).",
                 "- Order: run i of every transfer before run i+1, odd rounds in reverse "
                 "order, so slow drifts in the machine's load hit every transfer alike. "
                 "Finished downloads are truncated to "
                 "nothing (freeing their blocks and page cache) but deleted only when the "
                 "benchmark ends: this VM's root is an ext4 without a journal, whose inode "
                 "allocator skips every inode freed in the last 1–6 minutes with a buffer "
                 "lookup each, so once earlier runs had deleted thousands of files, creating "
                 "one took up to a millisecond, and a 1,000-file leecher spent up to a "
                 "CPU-second in the kernel on a cost set by the runs before it.",
                 "- transmission-cli sends its first `interested` at its first rechoke, 10 s "
                 "after its torrent starts, whoever the peer is and however soon it "
                 "connected, so every transfer to it includes that wait. It is started "
                 "first, and the clock with it; once it listens the seeder starts, checks "
                 "its data and dials it (`--peer`, connect_peer), well inside the 10 s. "
                 "Until 2026-11-27 the clock started when the seeder was ready, so a "
                 "seeder that checked its data faster waited longer (bittern's check takes "
                 "0.3 s, libtorrent's about 1.2 s). After that first `interested` "
                 "transmission-cli asks once a second for a batch of blocks that grows with "
                 "the rate it saw (4, 20, 120, 700, 4,100, then the seeder's `reqq`), so "
                 "its own timers and its one thread set the pace more than the seeder.",
                 "- MB/s = payload bytes (×4 for four leechers) / wall time, MB = 10^6 bytes. "
                 "CPU = user+sys seconds: the leecher's whole life (wait4 rusage; sum of the "
                 "four with four leechers), the seeder's during the transfer window (from "
                 "/proc/<pid>/stat). RssAnon/RssFile: peaks sampled every 50 ms from "
                 "/proc/<pid>/status (maximum over the leechers). libtorrent runs inside "
                 "Python, whose interpreter adds ~10 MiB RssAnon and ~0.1 s start-up.",
                 "- Client settings:"] + ["  - " + s for s in SETTINGS_NOTES] + [
                 "- Tools: wall time of the whole process on page-cached data, `bittern "
                 "create -q`, `mktorrent -t %s -l 18|22`, libtorrent's `create_torrent(fs, "
                 "piece, v1_only)` + `set_piece_hashes` (default settings), `bittern verify "
                 "-q`, and libtorrent's full check of an added torrent (time includes "
                 "Python start-up). CPU is user + system time (wait4 rusage), also shown "
                 "apart: user time is mostly SHA-1, system time mostly the kernel copying "
                 "file data (`pread`) or mapping it." % os.cpu_count(), ""]
        if a.v2:
            lines[-1:-1] = [
                "- `--v2`: the core transfers are run again, in the same rounds, on a v2-only "
                "torrent (BEP 52) of the same data and piece size made by `bittern create --v2` "
                "(labels ending in \"(v2)\"; libtorrent computes the same v2 info hash, checked "
                "every run); the ratio rows of a (v2) transfer are against the same transfer "
                "on the v1 torrent. A v2 leecher checks each piece by SHA-256 (merkle root of "
                "its 16 KiB leaves) instead of SHA-1. bittern builds before 2026-12-05 also ask "
                "their peer for each piece's leaves to check blocks on arrival (a bittern "
                "seeder reads and hashes each piece to answer); later ones ask only for the "
                "leaves of a piece that failed, as libtorrent does."]
        lines += ["## Transfers", ""]
        for (name, plabel), results in getattr(self, "transfer_results", {}).items():
            desc = [d for n, _, d in SETS if n == name][0]
            label = "%s, %s pieces" % (desc, plabel)
            lines += report.transfer_table(label, results) + [""]
            lines += report.ratio_table(label, results) + [""]
        if getattr(self, "tool_results", None):
            lines += ["## Torrent creation and verification", "",
                      "Ratios to `mktorrent` (hashing the same bytes) and to the libtorrent counterpart (its creator, its full check).", ""]
            nproc = os.cpu_count()
            mk = "mktorrent -t %s" % nproc
            lt_names = {"bittern create": "libtorrent create", "bittern verify": "libtorrent check"}
            for (name, plabel), rows in self.tool_results.items():
                desc = [d for n, _, d in SETS if n == name][0]
                lines += report.tool_table("%s, %s pieces" % (desc, plabel), rows, mk, lt_names) + [""]
                hs = {t: h for (n, p, t), h in self.tool_hashes.items() if n == name and p == plabel}
                ref = self.hashes[(name, plabel)][0]
                lines += ["info hash of bittern's torrent %s; libtorrent reads it as %s; %s" % (
                    ref, self.hashes[(name, plabel)][1],
                    ", ".join("%s made %s" % (t, "the same" if h == ref else h) for t, h in hs.items())), ""]
        lines += ["## Failures", ""]
        if not self.failures:
            lines += ["None: every run completed with correct data.", ""]
        for f in self.failures:
            lines += ["- **%s** on %s, run %d: %s. Logs: `%s`" % (
                f["label"], f["data"], f["run"], f["error"], f["logdir"])]
            for tag, cmd, code, tail in f["procs"]:
                lines += ["  - %s (exit %s): `%s`" % (tag, code, cmd)]
                if tail and ("bittern" in cmd):
                    lines += ["", "    ```"] + ["    " + t[:300] for t in tail] + ["    ```", ""]
        for n in self.notes:
            lines += ["- note: " + n]
        lines.append("")
        text = "\n".join(lines)
        write_results(a.results, text)
        print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--runs-big", type=int, default=None)
    ap.add_argument("--only", default="", help="transfers whose label matches this regex")
    ap.add_argument("--sets", default="", help="data sets (file1g.bin, dir256) matching this regex")
    ap.add_argument("--cache", default="/var/tmp/bittern-bench")
    ap.add_argument("--bittern", default=os.path.join(REPO, "target", "release", "bittern"))
    ap.add_argument("--bittern-old", default=None,
                    help="an older bittern binary to run beside the current one (bittern-old)")
    ap.add_argument("--v2", action="store_true",
                    help="also the core transfers on v2-only torrents of the same data, "
                    "with same-run ratio rows of v2 against v1")
    ap.add_argument("--results", default=os.path.join(REPO, "benches", "RESULTS.md"))
    ap.add_argument("--netns-note", default="plain loopback (no network namespace)")
    ap.add_argument("--no-transfers", action="store_true")
    ap.add_argument("--no-tools", action="store_true")
    ap.add_argument("--clean", action="store_true", help="delete the data cache at the end")
    ap.add_argument("--command", default=None, help="the command line to record")
    a = ap.parse_args()
    if a.runs is None:
        a.runs = 1 if a.quick else 5
    if a.runs_big is None:
        a.runs_big = a.runs
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    facts = machine_facts()
    b = Bench(a)
    b.t_start = time.time()
    b.versions = versions()
    log("run dir", b.run_dir, "load", facts["loadavg"], "network:", a.netns_note)
    data.ensure_data(b.data_dir, log)
    b.make_torrents()
    try:
        if not a.no_tools:
            b.run_tools()
        if not a.no_transfers:
            b.run_transfers()
    finally:
        b.write_results(facts, machine_facts(), started, a.command or " ".join(sys.argv))
        shutil.rmtree(b.work, ignore_errors=True)
        if a.clean:
            shutil.rmtree(b.data_dir, ignore_errors=True)
            shutil.rmtree(os.path.join(b.cache, "torrents"), ignore_errors=True)
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
