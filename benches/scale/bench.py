"""Scale benchmark: N tiny complete torrents seeded by one bittern process
and by one transmission-daemon, side by side, on loopback.

  bench.py run --n N [--size BYTES] [--piece BYTES] [--leechers K] [--idle S]
               [--settle S] [--clients bittern,transmission] [--bittern PATH]
               [--work DIR] [--out DIR] [--keep]
  bench.py report [--out DIR] [--results FILE]

`run` generates N single-file torrents of --size bytes (distinct seeded
PRNG data, --piece byte pieces, announce URL of an opentracker on
127.0.0.1) on a tmpfs, then for each client:

1. first start, no resume state: time from the process start until every
   torrent is seeding (bittern: `bittern seed` prints "<name>: verified,
   seeding" for each; transmission: torrents added with
   `transmission-remote -a`, then RPC `torrent-get` polled every 0.5 s
   until every status is 6, seeding), then a graceful stop;
2. second start, with the resume state the first left: time to every
   torrent seeding again; then wait until the tracker has seen all N
   (opentracker's torrent count) and --settle seconds more; then an idle
   window of --idle seconds: threads, VmRSS, RssAnon (from
   /proc/PID/status at the end, and the most threads seen every second)
   and user and system CPU (utime/stime from /proc/PID/stat) over the
   window, and the announces the tracker received in it;
3. K libtorrent leechers (one session, benches/scale/leech.py), one for
   each of the first K torrents, dial the seeder and download at 512 B/s
   each, so every connection stays open and moving through the window;
   once each has had a connection, settle, then the same window again.

Raw figures go to OUT/N.json; `report` turns every OUT/*.json into the
markdown table (benches/RESULTS-scale.md). Every process started is
stopped and the work dir is deleted at the end (unless --keep).
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import bencode, free_port  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LT_PYTHON = "/usr/bin/python3"  # Debian's: the one that imports libtorrent
LEECH_RATE = 512  # bytes per second per leecher torrent
PROCS = []  # every process started, stopped at exit


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# ---- torrents -----------------------------------------------------------

def make_set(work, n, size, piece, announce):
    """Data files and torrents; returns the torrent paths in order."""
    data = os.path.join(work, "data")
    tdir = os.path.join(work, "torrents")
    os.makedirs(data)
    os.makedirs(tdir)
    paths, hashes = [], []
    for i in range(n):
        name = "d%05d.bin" % i
        blob = random.Random(i).randbytes(size)
        with open(os.path.join(data, name), "wb") as f:
            f.write(blob)
        pieces = b"".join(hashlib.sha1(blob[o:o + piece]).digest()
                          for o in range(0, size, piece))
        info = {"name": name, "length": size, "piece length": piece, "pieces": pieces}
        hashes.append(hashlib.sha1(bencode(info)).hexdigest())
        meta = {"announce": announce, "created by": "bittern scale bench", "info": info}
        p = os.path.join(tdir, name + ".torrent")
        with open(p, "wb") as f:
            f.write(bencode(meta))
        paths.append(p)
    # Debian's opentracker serves only the info hashes of its whitelist.
    os.makedirs(os.path.join(work, "ot"))
    with open(os.path.join(work, "ot", "whitelist"), "w") as f:
        f.write("".join(h + "\n" for h in hashes))
    return paths


# ---- /proc --------------------------------------------------------------

def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Threads":
                out["threads"] = int(v)
            elif k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def wait_port(port, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_proc(p, sig=signal.SIGINT, timeout=60):
    """Signals p's process group and waits; returns the seconds it took."""
    if p.poll() is not None:
        return 0.0
    t0 = time.monotonic()
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        return 0.0
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        log("pid %d did not stop in %ds; killing" % (p.pid, timeout))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return time.monotonic() - t0


def spawn(argv, log_path, **kw):
    with open(log_path + ".cmd", "w") as f:
        f.write(" ".join(str(a) for a in argv)[:2000] + "\n")
    err = open(log_path + ".err", "wb")
    p = subprocess.Popen([str(a) for a in argv], stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    err.close()
    PROCS.append(p)
    return p


def stop_all():
    """Stops every process this benchmark started that still runs."""
    for p in PROCS:
        if p.poll() is None:
            stop_proc(p, signal.SIGTERM, 20)


# ---- tracker ------------------------------------------------------------

class Tracker:
    """A fresh opentracker on 127.0.0.1 (stats open to 127.0.0.1)."""

    def __init__(self, work, logs, port):
        self.port = port
        self.dir = os.path.join(work, "ot")
        self.p = spawn(["opentracker", "-i", "127.0.0.1", "-p", self.port, "-P", self.port,
                        "-A", "127.0.0.1", "-d", self.dir,
                        # read after the chroot to -d
                        "-w", "/whitelist"],
                       os.path.join(logs, "opentracker"), stdout=subprocess.DEVNULL)
        if not wait_port(self.port, 10):
            raise RuntimeError("opentracker did not start")

    def _get(self, mode):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats?mode=%s" % (self.port, mode),
                                    timeout=5) as r:
            return r.read().decode()

    def torrents(self):
        return int(self._get("torr").split()[0])

    def announces(self):
        text = self._get("everything")
        tcp = text.split("<tcp>", 1)[1]
        return int(tcp.split("<announce>", 1)[1].split("<", 1)[0])

    def stop(self):
        stop_proc(self.p, signal.SIGTERM, 10)


# ---- clients ------------------------------------------------------------

class Bittern:
    name = "bittern"

    def __init__(self, binary, work, torrents, logs):
        self.binary, self.work, self.torrents, self.logs = binary, work, torrents, logs
        self.port = free_port()
        self.p = None

    def start(self, tag):
        """Starts `bittern seed`; returns seconds until all are seeding."""
        n = len(self.torrents)
        argv = [self.binary, "seed", "-d", os.path.join(self.work, "data"), "-p", self.port,
                "--bind", "127.0.0.1", "--max-peers", 80,
                # As transmission's settings below: no DHT, uTP, LSD or PEX.
                "--no-dht", "--no-utp", "--no-lsd", "--no-pex"] + self.torrents
        t0 = time.monotonic()
        self.p = spawn(argv, os.path.join(self.logs, "bittern-" + tag), stdout=subprocess.PIPE)
        seeding = 0
        out = open(os.path.join(self.logs, "bittern-%s.out" % tag), "wb")
        for line in self.p.stdout:
            out.write(line)
            if line.endswith(b": verified, seeding\n"):
                seeding += 1
                if seeding == n:
                    break
        elapsed = time.monotonic() - t0
        if seeding < n:
            raise RuntimeError("bittern exited with %d of %d seeding" % (seeding, n))
        # Keep draining stdout so the process never blocks on the pipe.
        def drain(src=self.p.stdout, dst=out):
            for line in src:
                dst.write(line)
            dst.close()
        threading.Thread(target=drain, daemon=True).start()
        return elapsed

    def stop(self):
        return stop_proc(self.p, signal.SIGINT, 120)


class Transmission:
    name = "transmission"

    def __init__(self, work, torrents, logs):
        self.work, self.torrents, self.logs = work, torrents, logs
        self.config = os.path.join(work, "transmission")
        self.rpc = free_port()
        self.port = free_port()
        self.session_id = ""
        self.p = None
        os.makedirs(self.config, exist_ok=True)
        settings = {
            "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1",
            "dht-enabled": False,
            "lpd-enabled": False,
            "utp-enabled": False,
            "pex-enabled": False,
            "port-forwarding-enabled": False,
            "peer-port": self.port,
            "peer-port-random-on-start": False,
            "encryption": 0,
            "download-dir": os.path.join(work, "data"),
            "incomplete-dir-enabled": False,
            "rename-partial-files": False,
            "start-added-torrents": True,
            "download-queue-enabled": False,
            "seed-queue-enabled": False,
            "queue-stalled-enabled": False,
            "ratio-limit-enabled": False,
            "idle-seeding-limit-enabled": False,
            "rpc-enabled": True,
            "rpc-bind-address": "127.0.0.1",
            "rpc-port": self.rpc,
            "rpc-authentication-required": False,
            "rpc-whitelist-enabled": True,
            "rpc-whitelist": "127.0.0.1",
            "rpc-host-whitelist-enabled": False,
            "message-level": 1,
        }
        with open(os.path.join(self.config, "settings.json"), "w") as f:
            json.dump(settings, f, indent=1)

    def call(self, method, arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(3):
            req = urllib.request.Request("http://127.0.0.1:%d/transmission/rpc" % self.rpc,
                                         data=body,
                                         headers={"X-Transmission-Session-Id": self.session_id})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code == 409:
                    self.session_id = e.headers.get("X-Transmission-Session-Id", "")
                    continue
                raise
        raise RuntimeError("transmission rpc: no session id")

    def seeding(self):
        got = self.call("torrent-get", {"fields": ["id", "status"]})
        ts = got["arguments"]["torrents"]
        return len(ts), sum(1 for t in ts if t["status"] == 6)

    def start(self, tag):
        n = len(self.torrents)
        t0 = time.monotonic()
        self.p = spawn(["transmission-daemon", "-f", "-g", self.config],
                       os.path.join(self.logs, "transmission-" + tag),
                       stdout=subprocess.DEVNULL)
        if not wait_port(self.rpc, 120):
            raise RuntimeError("transmission-daemon rpc did not come up")
        if tag == "first":
            # 500 torrents per transmission-remote call (one RPC each).
            for i in range(0, n, 500):
                argv = ["transmission-remote", "127.0.0.1:%d" % self.rpc]
                for t in self.torrents[i:i + 500]:
                    argv += ["-a", t]
                r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL)
                if r.returncode != 0:
                    raise RuntimeError("transmission-remote -a: %s" % r.stderr.decode()[-500:])
        while True:
            if self.p.poll() is not None:
                raise RuntimeError("transmission-daemon exited")
            try:
                total, seeding = self.seeding()
            except (OSError, ValueError, KeyError) as e:
                log("rpc:", e)
                total, seeding = 0, 0
            if total == n and seeding == n:
                return time.monotonic() - t0
            time.sleep(0.5)

    def stop(self):
        return stop_proc(self.p, signal.SIGTERM, 120)


# ---- measurement --------------------------------------------------------

def window(pid, seconds, tracker):
    """Idle window: CPU over `seconds`, memory at the end, most threads."""
    a0 = tracker.announces()
    u0, s0 = proc_cpu(pid)
    t0 = time.monotonic()
    threads = 0
    end = t0 + seconds
    while time.monotonic() < end:
        threads = max(threads, proc_status(pid)["threads"])
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    u1, s1 = proc_cpu(pid)
    wall = time.monotonic() - t0
    st = proc_status(pid)
    return {"wall": wall, "user": u1 - u0, "sys": s1 - s0, "cpu": u1 - u0 + s1 - s0, "threads": st["threads"],
            "threads_max": max(threads, st["threads"]), "rss": st["VmRSS"],
            "anon": st["RssAnon"], "fds": st["fds"], "announces": tracker.announces() - a0}


def wait_tracker(tracker, n, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if tracker.torrents() >= n:
            return time.monotonic() - t0
        time.sleep(1)
    log("tracker knows %d of %d torrents after %ds" % (tracker.torrents(), n, timeout))
    return None


def leech_phase(client, torrents, args, work, logs, tracker):
    save = os.path.join(work, "leech-" + client.name)
    os.makedirs(save)
    argv = [LT_PYTHON, os.path.join(HERE, "leech.py"), free_port(),
            "127.0.0.1:%d" % client.port, save, LEECH_RATE] + torrents
    lp = spawn(argv, os.path.join(logs, "leech-" + client.name), stdout=subprocess.PIPE)
    t0 = time.monotonic()
    connected = None
    try:
        for line in lp.stdout:
            if line.startswith(b"ALL"):
                connected = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 120:
                break
        if connected is None:
            raise RuntimeError("leechers did not all connect to %s" % client.name)
        last = [0]

        def follow():
            for line in lp.stdout:
                if line.startswith(b"CONNECTED "):
                    last[0] = int(line.split()[1])
        threading.Thread(target=follow, daemon=True).start()
        time.sleep(args.settle)
        before = last[0]
        w = window(client.p.pid, args.idle, tracker)
        w["connect"] = connected
        w["connected"] = [before, last[0]]
        return w
    finally:
        stop_proc(lp, signal.SIGTERM, 30)
        shutil.rmtree(save, ignore_errors=True)


def run_client(client, args, torrents, work, logs, port):
    n = len(torrents)
    res = {}
    tracker = Tracker(work, logs, port)
    try:
        log("%s: first start (no resume state)" % client.name)
        res["first"] = client.start("first")
        log("%s: all %d seeding after %.2f s" % (client.name, n, res["first"]))
        wait_tracker(tracker, n, 600)
        res["stop"] = client.stop()
        log("%s: stopped in %.2f s" % (client.name, res["stop"]))
    finally:
        tracker.stop()
    time.sleep(2)
    tracker = Tracker(work, logs, port)
    try:
        log("%s: second start (resume state)" % client.name)
        res["second"] = client.start("second")
        log("%s: all %d seeding after %.2f s" % (client.name, n, res["second"]))
        res["tracker_all"] = wait_tracker(tracker, n, 900)
        time.sleep(args.settle)
        log("%s: idle window %ds" % (client.name, args.idle))
        res["idle"] = window(client.p.pid, args.idle, tracker)
        log("%s: idle %s" % (client.name, res["idle"]))
        if args.leechers:
            log("%s: %d leechers" % (client.name, args.leechers))
            res["leech"] = leech_phase(client, torrents[:args.leechers], args, work, logs,
                                       tracker)
            log("%s: with leechers %s" % (client.name, res["leech"]))
    finally:
        res["stop2"] = client.stop()
        tracker.stop()
    return res


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    return {"cpu": model, "sha_ni": " sha_ni " in flags, "nproc": os.cpu_count(),
            "kernel": os.uname().release, "load": os.getloadavg()}


def version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def cmd_run(args):
    os.makedirs(args.out, exist_ok=True)
    work = args.work or "/dev/shm/bittern-scale-%d" % os.getpid()
    os.makedirs(work)
    logs = os.path.join(args.out, "logs-%d" % args.n)
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    started = time.time()
    result = {"n": args.n, "size": args.size, "piece": args.piece, "leechers": args.leechers,
              "idle": args.idle, "settle": args.settle, "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "netns": args.netns_note, "command": args.command,
              "git": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
              "transmission": version(["transmission-daemon", "--version"]),
              "clients": {}}
    def on_term(*_):
        # Once: a second signal must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(1)
    signal.signal(signal.SIGTERM, on_term)
    try:
        log("generating %d torrents of %d bytes in %s" % (args.n, args.size, work))
        # Every fresh tracker listens on the port the announce URL names.
        port = free_port()
        torrents = make_set(work, args.n, args.size, args.piece,
                            "http://127.0.0.1:%d/announce" % port)
        for name in args.clients.split(","):
            if name == "bittern":
                client = Bittern(args.bittern, work, torrents, logs)
            elif name == "transmission":
                client = Transmission(work, torrents, logs)
            else:
                raise SystemExit("unknown client " + name)
            result["clients"][name] = run_client(client, args, torrents, work, logs, port)
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["minutes"] = (time.time() - started) / 60
    path = os.path.join(args.out, "%d.json" % args.n)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    log("wrote", path)


# ---- report -------------------------------------------------------------

def mib(b):
    return "%.1f" % (b / 2**20)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return "%.2f" % (a / b)


def render(results):
    out = ["# bittern scale benchmark — results", "",
           "Generated by `benches/scale/run.sh` (see README, \"Benchmarks\"). "
           "Hand-written analysis, if any, is at the end.", ""]
    for r in results:
        m = r["machine"]
        out += ["## N = {:,}".format(r["n"]), "",
                "- date: %s, git %s, %.0f min; command: `%s`" % (
                    r["date"], r["git"], r["minutes"], r["command"]),
                "- machine: %s (%s cores%s), kernel %s, load at start %s" % (
                    m["cpu"], m["nproc"], ", SHA-NI" if m["sha_ni"] else "", m["kernel"],
                    " ".join("%.2f" % x for x in m["load"])),
                "- network: %s" % r["netns"],
                "- set: %s torrents of %s bytes (%s byte pieces) on tmpfs; opentracker on "
                "127.0.0.1, a fresh one per start; %s; %s" % (
                    "{:,}".format(r["n"]), "{:,}".format(r["size"]),
                    "{:,}".format(r["piece"]), r["transmission"],
                    "windows of %d s after a %d s settle" % (r["idle"], r["settle"])),
                ""]
        c = r["clients"]
        b, t = c.get("bittern"), c.get("transmission")

        def get(x, *path):
            for p in path:
                if x is None:
                    return None
                x = x.get(p)
            return x

        rows = [
            ("all seeding, first start (s)", ("first",), lambda v: "%.2f" % v),
            ("all seeding, second start with resume state (s)", ("second",),
             lambda v: "%.2f" % v),
            ("graceful stop (s)", ("stop",), lambda v: "%.2f" % v),
            ("tracker has all N, after all seeding (s)", ("tracker_all",),
             lambda v: "%.1f" % v),
        ]
        for phase, label in (("idle", "idle"), ("leech", "%d leechers" % r["leechers"])):
            rows += [
                ("%s: threads (most seen)" % label, (phase, "threads_max"), str),
                ("%s: open fds" % label, (phase, "fds"), str),
                ("%s: VmRSS (MiB)" % label, (phase, "rss"), mib),
                ("%s: RssAnon (MiB)" % label, (phase, "anon"), mib),
                ("%s: CPU user (s per %d s)" % (label, r["idle"]), (phase, "user"),
                 lambda v: "%.2f" % v),
                ("%s: CPU system (s per %d s)" % (label, r["idle"]), (phase, "sys"),
                 lambda v: "%.2f" % v),
                ("%s: CPU user + system (s per %d s)" % (label, r["idle"]), (phase, "cpu"),
                 lambda v: "%.2f" % v),
                ("%s: tracker announces in the window" % label, (phase, "announces"), str),
            ]
            if phase == "leech":
                rows += [
                    ("%s: torrents with a connected leecher, window start / end" % label,
                     (phase, "connected"), lambda v: "%d / %d" % tuple(v)),
                    ("%s: seconds until each had connected once" % label, (phase, "connect"),
                     lambda v: "%.1f" % v),
                ]
        out += ["| N = {:,} | bittern | transmission-daemon | ratio |".format(r["n"]),
                "|---|---|---|---|"]
        for label, path, fmt in rows:
            bv, tv = get(b, *path), get(t, *path)
            numeric = isinstance(bv, (int, float)) and isinstance(tv, (int, float))
            out.append("| %s | %s | %s | %s |" % (
                label, "–" if bv is None else fmt(bv), "–" if tv is None else fmt(tv),
                ratio(bv, tv) if numeric else "–"))
        out.append("")
    return out


def cmd_report(args):
    results = []
    for name in sorted(os.listdir(args.out)):
        if name.endswith(".json"):
            with open(os.path.join(args.out, name)) as f:
                results.append(json.load(f))
    results.sort(key=lambda r: r["n"])
    lines = render(results)
    keep = []
    if os.path.exists(args.results):
        text = open(args.results).read()
        marker = "\n## Analysis"
        if marker in text:
            keep = [text[text.index(marker) + 1:]]
    with open(args.results, "w") as f:
        f.write("\n".join(lines) + "\n" + "".join(keep))
    log("wrote", args.results)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--size", type=int, default=64 << 10)
    r.add_argument("--piece", type=int, default=16 << 10)
    r.add_argument("--leechers", type=int, default=100)
    r.add_argument("--idle", type=int, default=60)
    r.add_argument("--settle", type=int, default=10)
    r.add_argument("--clients", default="bittern,transmission")
    r.add_argument("--bittern", default=os.path.join(REPO, "target/release/bittern"))
    r.add_argument("--work")
    r.add_argument("--out", default="/var/tmp/bittern-scale")
    r.add_argument("--keep", action="store_true")
    r.add_argument("--netns-note", default="plain loopback")
    r.add_argument("--command", default="")
    p = sub.add_parser("report")
    p.add_argument("--out", default="/var/tmp/bittern-scale")
    p.add_argument("--results", default=os.path.join(REPO, "benches/RESULTS-scale.md"))
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
