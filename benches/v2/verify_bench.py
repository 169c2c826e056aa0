"""Same-run CPU of `bittern verify` (two builds) against libtorrent's full
check of one torrent, alternating order; medians of user, system, wall.

usage: python3 verify_bench.py RUNS DIR TORRENT BITTERN_A BITTERN_B
(DIR holds the torrent's content; loopback only, nothing is sent.)
"""
import os, subprocess, sys, time, statistics
runs, d, t, a, b = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
here = os.path.dirname(os.path.abspath(__file__))
cmds = {
 "bittern A verify": [a, "verify", "-q", "-d", d, t],
 "bittern B verify": [b, "verify", "-q", "-d", d, t],
 "libtorrent check": ["/usr/bin/python3", os.path.join(here, "lt_check.py"), t, d],
}
res = {k: [] for k in cmds}
print("load at start", os.getloadavg())
for r in range(runs):
    order = list(cmds) if r % 2 == 0 else list(reversed(list(cmds)))
    for k in order:
        t0 = time.time()
        p = subprocess.Popen(cmds[k], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.time() - t0
        if status != 0:
            print(k, "FAILED", p.stderr.read()[-500:]); sys.exit(1)
        res[k].append((ru.ru_utime, ru.ru_stime, wall))
print("load at end", os.getloadavg())
for k, v in res.items():
    u = statistics.median(x[0] for x in v); s = statistics.median(x[1] for x in v)
    c = statistics.median(x[0] + x[1] for x in v); w = statistics.median(x[2] for x in v)
    print(f"{k:18s} user {u:.2f} sys {s:.2f} cpu {c:.2f} wall {w:.2f}  ")
