"""Same-run benchmark of v2 and hybrid torrent tools (issue 23): `bittern
create --v2/--hybrid` against libtorrent 2.0's creator, and `bittern
verify` against libtorrent's full check, on the 1 GiB file and the
1,000-file 256 MiB set of benches/swarm/data.py (generated under DATA, not
in the repo). Runs alternate order (run i of every command before run i+1,
odd rounds reversed); each figure is the median of RUNS, with user and
system CPU apart (wait4 rusage of the whole process, Python start-up
included for libtorrent). Run the whole script under one niceness (e.g.
`nice -n 19`) so both sides get the same share of a loaded machine.

usage: python3 tools_bench.py [--runs N] [--data DIR] [--work DIR]
                              [--piece KIB] [--bittern PATH] [--sets a,b] [--kinds v2,hybrid]
                              [--extra-bittern LABEL=PATH]
                              [--extra-bittern-env LABEL=PATH:VAR=VALUE[:VAR=VALUE...]]
`--extra-bittern-env` runs another bittern (the same build or another) with
extra environment variables, e.g. `noavx512=target/release/bittern:BITTERN_NO_AVX512=1`
for the hashing paths of a CPU without AVX-512 on one with it.
Prints a Markdown report on stdout; nothing is sent over any network.
"""
import argparse, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "swarm"))
import data  # noqa: E402

PY = "/usr/bin/python3"


def run(cmd, env=None):
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=None if not env else dict(os.environ, **env))
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.time() - t0
    err = p.stderr.read().decode(errors="replace")
    if status != 0:
        raise SystemExit("%s failed (%d): %s" % (" ".join(cmd), status, err[-800:]))
    return ru.ru_utime, ru.ru_stime, wall


def info(bittern, t):
    out = subprocess.run([bittern, "info", "--json", t], capture_output=True, check=True).stdout
    j = json.loads(out)
    return j["info_hash"], j.get("info_hash_v2"), j["piece_count"]


def med(v, i):
    return statistics.median(x[i] for x in v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data", default="/var/tmp/bittern-v2bench/data")
    ap.add_argument("--work", default="/var/tmp/bittern-v2bench/work")
    ap.add_argument("--piece", type=int, default=256, help="piece length, KiB")
    ap.add_argument("--bittern", default=os.path.join(HERE, "..", "..", "target", "release", "bittern"))
    ap.add_argument("--extra-bittern", action="append", default=[],
                    help="LABEL=PATH: another bittern build to create and verify with (verify: bittern's torrent)")
    ap.add_argument("--extra-bittern-env", action="append", default=[],
                    help="LABEL=PATH:VAR=VALUE[:VAR=VALUE...]: as --extra-bittern, run with these "
                         "environment variables set (e.g. noavx512=target/release/bittern:BITTERN_NO_AVX512=1)")
    ap.add_argument("--sets", default="file1g.bin,dir256")
    ap.add_argument("--kinds", default="v2,hybrid")
    a = ap.parse_args()
    bittern = os.path.abspath(a.bittern)
    data.ensure_data(a.data, lambda *x: print(*x, file=sys.stderr))
    os.makedirs(a.work, exist_ok=True)
    plen = a.piece * 1024
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    sizes = {"file1g.bin": data.FILE_SIZE, "dir256": data.DIR_SIZE}
    sets = a.sets.split(",")
    kinds = a.kinds.split(",")
    extra = [x.split("=", 1) + [{}] for x in a.extra_bittern]
    for x in a.extra_bittern_env:
        label, rest = x.split("=", 1)
        path, *pairs = rest.split(":")
        env = dict(p.split("=", 1) for p in pairs)
        if not env:
            raise SystemExit("--extra-bittern-env %s: no VAR=VALUE after the path" % x)
        extra.append([label, path, env])
    envs = {}  # (set, kind, label) -> extra environment
    # page-cache the data once
    for s in sets:
        subprocess.run(["cat"] + ([os.path.join(a.data, s)] if s == "file1g.bin" else
                       [os.path.join(a.data, s, r) for r, _ in data.dir_files()]),
                       stdout=subprocess.DEVNULL, check=True)
    cmds = {}  # (set, kind, label) -> argv
    for s in sets:
        src = os.path.join(a.data, s)
        for k in kinds:
            bt = os.path.join(a.work, "%s.%s.bittern.torrent" % (s, k))
            lt_ = os.path.join(a.work, "%s.%s.lt.torrent" % (s, k))
            cmds[(s, k, "bittern create")] = [bittern, "create", "-q", "--force", "--%s" % k,
                                              "--piece-length", "%dKiB" % a.piece, src, "-o", bt]
            cmds[(s, k, "libtorrent create")] = [PY, os.path.join(HERE, "lt_create.py"), src, lt_, k, str(plen)]
            cmds[(s, k, "bittern verify")] = [bittern, "verify", "-q", "-d", a.data, bt]
            for label, path, env in extra:
                envs[(s, k, label + " create")] = envs[(s, k, label + " verify")] = env
                cmds[(s, k, label + " create")] = [os.path.abspath(path), "create", "-q", "--force", "--%s" % k,
                                                   "--piece-length", "%dKiB" % a.piece, src, "-o",
                                                   os.path.join(a.work, "%s.%s.%s.torrent" % (s, k, label))]
                cmds[(s, k, label + " verify")] = [os.path.abspath(path), "verify", "-q", "-d", a.data, bt]
            cmds[(s, k, "libtorrent check")] = [PY, os.path.join(HERE, "lt_check.py"), bt, a.data]
    # torrents first, so verify/check have something to read
    for key, argv in cmds.items():
        if key[2].endswith("create"):
            run(argv, envs.get(key))
    res = {k: [] for k in cmds}
    order = list(cmds)
    for r in range(a.runs):
        for key in (order if r % 2 == 0 else list(reversed(order))):
            res[key].append(run(cmds[key], envs.get(key)))
        print("round %d done, load %s" % (r + 1, os.getloadavg()), file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    sha_ni = "sha_ni" in open("/proc/cpuinfo").read()
    print("## v2 / hybrid create and verify against libtorrent, %s" % started)
    print()
    print("- command: `nice -n 19 python3 benches/v2/tools_bench.py %s`" % " ".join(sys.argv[1:]))
    print("- bittern: %s; libtorrent %s (python3-libtorrent, default settings)" % (bittern, subprocess.run(
        [PY, "-c", "import libtorrent; print(libtorrent.__version__)"], capture_output=True, text=True).stdout.strip()))
    print("- machine: nproc %d, %s (SHA extensions: %s), load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f"
          % (os.cpu_count(), cpu, "sha_ni" if sha_ni else "none", *load0, *load1))
    print("- piece length %d KiB; data page-cached; %d runs, medians; MB = 10^6 bytes; MB/s = bytes / wall;"
          " CPU = user + sys of the whole process (libtorrent's includes ~0.1 s of Python start-up)" % (a.piece, a.runs))
    for label, path, env in extra:
        print("- %s: %s%s" % (label, os.path.abspath(path), "".join(
            " with %s=%s" % kv for kv in sorted(env.items()))))
    print()
    for s in sets:
        for k in kinds:
            bt = os.path.join(a.work, "%s.%s.bittern.torrent" % (s, k))
            lt_ = os.path.join(a.work, "%s.%s.lt.torrent" % (s, k))
            hb, hl = info(bittern, bt), info(bittern, lt_)
            print("#### %s, %s (%d pieces)" % (s, k, hb[2]))
            print()
            print("| tool | wall s | MB/s | CPU s | user s | sys s | CPU × libtorrent | MB/s × libtorrent |")
            print("|---|---|---|---|---|---|---|---|")
            for key in [x for x in cmds if x[0] == s and x[1] == k]:
                v = res[key]
                u, sy, w = med(v, 0), med(v, 1), med(v, 2)
                c = statistics.median(x[0] + x[1] for x in v)
                other = "libtorrent create" if key[2].endswith("create") else "libtorrent check"
                ratio_c = ratio_w = "—"
                if not key[2].startswith("libtorrent"):
                    o = res[(s, k, other)]
                    oc = statistics.median(x[0] + x[1] for x in o)
                    ratio_c = "%.2f× less" % (oc / c)
                    ratio_w = "%.2f×" % (med(o, 2) / w)
                print("| %s | %.2f (%.2f–%.2f) | %.0f | %.2f | %.2f | %.2f | %s | %s |" % (
                    key[2], w, min(x[2] for x in v), max(x[2] for x in v), sizes[s] / w / 1e6, c, u, sy, ratio_c, ratio_w))
            same = "the same" if hb[:2] == hl[:2] else "DIFFERENT (%s / %s)" % (hl[0], hl[1])
            print()
            print("info hashes of bittern's torrent: v1 %s, v2 %s; libtorrent's torrent: %s" % (hb[0], hb[1], same))
            print()


if __name__ == "__main__":
    main()
