"""Magnet benchmark: time from a magnet link alone to the metadata and to a
complete download, bittern against libtorrent, from the same libtorrent
seeder in the same run. Run it through `benches/swarm/run.sh --magnet`
(network namespace holding only `lo`).

Usage: /usr/bin/python3 magnet.py [--runs N] [--cache DIR] [--bittern PATH]
           [--results FILE] [--netns-note TEXT] [--command TEXT]

Per round: a fresh libtorrent seeder (lt_node.py seed, full check first) of
a 64 MiB file (256 KiB pieces, no tracker), then each leecher in turn
(order alternates between rounds) given only
`magnet:?xt=urn:btih:HASH&x.pe=127.0.0.1:SEEDER_PORT`:

- bittern: `bittern -v download MAGNET -d DIR -p PORT --bind 127.0.0.1
  --exit-on-complete`; metadata time = the millisecond timestamp of its
  "metadata complete" log line;
- libtorrent: `lt_node.py magnet MAGNET DIR PORT` (parse_magnet_uri, same
  session settings as the other roles); metadata time = when its
  metadata_received_alert is popped.

"To metadata" and "to completion" are measured from the wall clock just
before the process is spawned,
so libtorrent's figures include Python's start-up and `import libtorrent`
(measured apart, `lt_node.py hash` is reported as "python start-up").
"Metadata, from torrent added" leaves process start-up out: from
bittern's "fetching metadata" log line, from right before libtorrent's
add_torrent (log timestamps are milliseconds).
Completion = the process exits 0 after completing; then the bytes are
compared with the source. CPU = user and system seconds of the leecher's
whole life (wait4 rusage).
"""

import argparse
import datetime
import filecmp
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

from bench import machine_facts, prefault, versions
from clients import LT_NODE, PY
from procs import Proc, Watch, port_listening, run_timed

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MIB = 1024 * 1024
SIZE = 64 * MIB
NAME = "file64m.bin"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def ensure_data(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, NAME)
    if not (os.path.isfile(path) and os.path.getsize(path) == SIZE):
        rng = random.Random(0x64A6)
        with open(path, "wb") as f:
            for _ in range(SIZE // (4 * MIB)):
                f.write(rng.randbytes(4 * MIB))
    with open(path, "rb") as f:
        while f.read(4 * MIB):
            pass
    return path


def log_time(text, needle):
    """Unix time of the first env_logger line (millisecond timestamps,
    UTC) containing needle."""
    for line in text.splitlines():
        if needle in line:
            m = re.match(r"\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                dt = datetime.datetime.fromisoformat(m.group(1))
                return dt.replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def one(kind, binary, uri, save, port, logdir, tag, source):
    w = Watch()
    if kind == "bittern":
        argv = [binary, "-v", "download", uri, "-d", save, "-p", port,
                "--bind", "127.0.0.1", "--exit-on-complete"]
    else:
        argv = [PY, LT_NODE, "magnet", uri, save, port]
    prefault(SIZE)
    t_wall = time.time()
    p = w.add(Proc(tag, argv, logdir))
    ok = w.until(lambda: not p.alive(), time.monotonic() + 120)
    if not ok:
        p.kill()
        return {"ok": False, "error": "timeout"}
    if p.exit_code != 0:
        return {"ok": False, "error": "exit code %s" % p.exit_code}
    if kind == "bittern":
        err = open(p.err_path, errors="replace").read()
        t_meta = log_time(err, "metadata complete")
        t_add = log_time(err, "fetching metadata")
    else:
        m = re.search(r"METADATA ([0-9.]+)", p.output())
        t_meta = float(m.group(1)) if m else None
        m = re.search(r"ADDED ([0-9.]+)", p.output())
        t_add = float(m.group(1)) if m else None
    if t_meta is None or t_add is None:
        return {"ok": False, "error": "no metadata time in the logs"}
    got = os.path.join(save, NAME)
    same = os.path.isfile(got) and filecmp.cmp(got, source, shallow=False)
    user, sys_s = p.cpu_split()
    res = {"ok": same, "meta": t_meta - t_wall, "meta_add": t_meta - t_add,
           "done": p.t_exit - p.t_start,
           "user": user, "sys": sys_s}
    if not same:
        res["error"] = "downloaded bytes differ from the source"
    return res


def fmt(vals, f="%.3f"):
    vals = [v for v in vals if v == v]
    if not vals:
        return "—"
    med, lo, hi = statistics.median(vals), min(vals), max(vals)
    return (f + " (" + f + "–" + f + ")") % (med, lo, hi)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magnet", action="store_true", help="ignored (run.sh's switch)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", default="/var/tmp/bittern-bench-magnet")
    ap.add_argument("--bittern", default=os.path.join(REPO, "target", "release", "bittern"))
    ap.add_argument("--results", default=os.path.join(REPO, "benches", "RESULTS-magnet.md"))
    ap.add_argument("--netns-note", default="plain loopback (no network namespace)")
    ap.add_argument("--command", default=None)
    a = ap.parse_args()
    facts = machine_facts()
    vers = versions()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    run_dir = os.path.join(a.cache, "runs", time.strftime("%Y%m%d-%H%M%S"))
    logs = os.path.join(run_dir, "logs")
    work = os.path.join(run_dir, "work")
    os.makedirs(logs)
    os.makedirs(work)
    binary = os.path.join(run_dir, "bittern")
    shutil.copy2(a.bittern, binary)
    data_dir = os.path.join(a.cache, "data")
    source = ensure_data(data_dir)
    torrent = os.path.join(a.cache, "file64m.torrent")
    r = subprocess.run([binary, "create", source, "-o", torrent, "--piece-length", "256KiB", "-f"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"info hash:\s*([0-9a-f]{40})", r.stdout)
    if r.returncode != 0 or not m:
        raise SystemExit("bittern create failed: %s %s" % (r.stdout, r.stderr))
    ih = m.group(1)
    _, py_wall, _, _ = run_timed([PY, LT_NODE, "hash", torrent], logs, "lt-hash", 60)
    results = {"bittern": [], "libtorrent": []}
    failures = []
    port = 22000
    for i in range(a.runs):
        rdir = os.path.join(logs, "run%d" % i)
        os.makedirs(rdir)
        sport = port = port + 1
        w = Watch()
        seeder = w.add(Proc("seeder", [PY, LT_NODE, "seed", torrent, data_dir, sport], rdir))
        try:
            if not w.until(lambda: "READY" in seeder.output() and port_listening(sport),
                           time.monotonic() + 60):
                raise SystemExit("seeder not ready: %s" % seeder.stderr_tail())
            uri = "magnet:?xt=urn:btih:%s&x.pe=127.0.0.1:%d" % (ih, sport)
            order = ["bittern", "libtorrent"] if i % 2 == 0 else ["libtorrent", "bittern"]
            for kind in order:
                port += 1
                save = os.path.join(work, "%s-%d" % (kind, i))
                os.makedirs(save)
                res = one(kind, binary, uri, save, port, rdir, kind, source)
                log("run", i, kind, res)
                results[kind].append(res)
                if not res["ok"]:
                    failures.append((kind, i, res.get("error"), rdir))
                shutil.rmtree(save, ignore_errors=True)
        finally:
            w.kill_all()
    end = machine_facts()
    lines = [
        "# bittern magnet benchmark — results", "",
        "Generated by `benches/swarm/run.sh --magnet` (`benches/swarm/magnet.py`). "
        "Hand-written analysis, if any, is at the end.", "",
        "## Run", "",
        "- date: %s; command: `%s`" % (started, a.command or " ".join(sys.argv)),
        "- network: %s" % a.netns_note,
        "- bittern git %s; libtorrent %s" % (vers["git"], vers["libtorrent"]),
        "- run dir (logs): `%s`" % run_dir, "",
        "## Machine", "",
        "- nproc %s, CPU model %s, kernel %s" % (facts["nproc"], facts["cpu"], facts["kernel"]),
        "- load average at start %s, at end %s (2 cores shared with other engineers' builds "
        "and tests: absolute times are noisy, compare within a run)" % (
            " ".join(facts["loadavg"]), " ".join(end["loadavg"])), "",
        "## Method", "",
    ] + [x for para in __doc__.split("\n\n")[2:] for x in (para.strip(), "")] + [
        "## Results (%d rounds; median (min–max) of the successful runs)" % a.runs, "",
        "64 MiB single file, 256 KiB pieces (256 pieces; info dictionary one "
        "ut_metadata block), info hash %s. Python start-up + `import libtorrent` "
        "alone (`lt_node.py hash`): %.3f s." % (ih, py_wall), "",
        "| leecher | ok | to metadata s | metadata, from torrent added s | to completion s "
        "| user CPU s | system CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("bittern", "libtorrent"):
        rs = [x for x in results[kind] if x["ok"]]
        lines.append("| %s | %d/%d | %s | %s | %s | %s | %s |" % (
            kind, len(rs), len(results[kind]), fmt([x["meta"] for x in rs]),
            fmt([x["meta_add"] for x in rs]),
            fmt([x["done"] for x in rs]), fmt([x["user"] for x in rs], "%.2f"),
            fmt([x["sys"] for x in rs], "%.2f")))
    lines += ["", "Per run (to metadata / from torrent added / to completion, s):", ""]
    for kind in ("bittern", "libtorrent"):
        lines.append("- %s: %s" % (kind, ", ".join(
            "%.3f / %.3f / %.3f" % (x["meta"], x["meta_add"], x["done"]) if x["ok"] else "failed"
            for x in results[kind])))
    lines += ["", "## Failures", ""]
    lines += ["- %s run %d: %s (logs `%s`)" % f for f in failures] or ["None."]
    lines.append("")
    text = "\n".join(lines)
    write_results(a.results, text)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
