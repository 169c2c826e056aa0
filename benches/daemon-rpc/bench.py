#!/usr/bin/env python3
"""torrent-get of transmission-remote -l's fields, bittern daemon against
transmission-daemon holding the same N torrents, in the same run.

Both daemons get the same N tiny torrents (64 KiB of data each, 16 KiB
pieces) added paused over RPC (`torrent-add` with `metainfo` and
`paused: true`), so neither checks or announces anything. Then `--calls`
rounds: each round sends one `torrent-get` to each daemon (order
alternating), over one keep-alive connection per daemon, timing from the
request's first byte to the response's last, and reading the daemon's
/proc/PID/stat utime and stime just before and just after the call.

Usage: bench.py --bittern BIN --n 1000 --n 10000 --calls 50 --out DIR
Writes DIR/result-N.json and prints a Markdown table.
"""

import argparse
import re
import base64
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import bencode, free_port  # noqa: E402


# What transmission-remote 3.00 asks for with -l (utils/remote.c, recorded in
# ../shared/reference/transmission-rpc-transcripts.md).
LIST_FIELDS = ["error", "errorString", "eta", "id", "isFinished", "leftUntilDone",
               "name", "peersGettingFromUs", "peersSendingToUs", "rateDownload",
               "rateUpload", "sizeWhenDone", "status", "uploadRatio"]
PIECE = 16 * 1024
SIZE = 64 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def torrent(i):
    """Torrent number i: a single file of SIZE bytes derived from i."""
    seed = hashlib.sha256(b"bittern-bench-%d" % i).digest()
    data = (seed * (SIZE // len(seed) + 1))[:SIZE]
    pieces = b"".join(hashlib.sha1(data[o:o + PIECE]).digest() for o in range(0, SIZE, PIECE))
    meta = {"announce": "http://127.0.0.1:9/announce", "created by": "bittern bench",
            "info": {"length": SIZE, "name": "bench-%05d.bin" % i, "piece length": PIECE,
                     "pieces": pieces}}
    return base64.b64encode(bencode(meta)).decode()


def cpu(pid):
    """(utime, stime) of the whole process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / TICK, int(rest[12]) / TICK


class Rpc:
    """One keep-alive connection with the session-id handshake."""

    def __init__(self, port):
        self.port = port
        self.sid = ""
        self.conn = None

    def raw(self, body):
        for _ in range(4):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                self.conn.request("POST", "/transmission/rpc", body,
                                  {"X-Transmission-Session-Id": self.sid,
                                   "Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                time.sleep(0.2)
                continue
            if r.status == 409:
                self.sid = r.getheader("X-Transmission-Session-Id", "")
                continue
            if r.status != 200:
                raise RuntimeError("http %d: %r" % (r.status, data[:200]))
            return data
        raise RuntimeError("rpc on port %d failed" % self.port)

    def call(self, method, arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        reply = json.loads(self.raw(body))
        if reply.get("result") != "success":
            raise RuntimeError("%s: %s" % (method, reply.get("result")))
        return reply["arguments"]

    def wait_up(self, proc, what):
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(what + " exited")
            try:
                self.call("session-get", {})
                return
            except (RuntimeError, OSError):
                time.sleep(0.2)
        raise RuntimeError(what + " rpc did not come up")


def page_fields(repo):
    """LIST_FIELDS of the daemon's web page (daemon/web/app.js), as sent."""
    text = open(os.path.join(repo, "daemon", "web", "app.js")).read()
    m = re.search(r"const LIST_FIELDS = \[(.*?)\];", text, re.S)
    return re.findall(r'"([^"]+)"', m.group(1))


def web_bytes(r, fields, quiet_after):
    """Bytes of the web page's requests replayed against one daemon: the
    first load (session-get, the whole list) and one refresh
    (recently-active list + session-stats), request and response bodies,
    once nothing was added for `quiet_after` seconds."""
    time.sleep(max(0.0, quiet_after))

    def call(method, args):
        body = json.dumps({"method": method, "arguments": args}).encode()
        return len(body), r.raw(body)

    out = {}
    q1, a1 = call("session-get", {"fields": ["speed-limit-down", "speed-limit-down-enabled",
                                             "speed-limit-up", "speed-limit-up-enabled"]})
    q2, a2 = call("torrent-get", {"format": "table", "fields": fields})
    out["load_request"], out["load_response"] = q1 + q2, len(a1) + len(a2)
    q3, a3 = call("torrent-get", {"ids": "recently-active", "format": "table", "fields": fields})
    q4, a4 = call("session-stats", {})
    out["refresh_request"], out["refresh_response"] = q3 + q4, len(a3) + len(a4)
    out["refresh_rows"] = len(json.loads(a3)["arguments"]["torrents"]) - 1
    return out


def start_transmission(work, nice):
    conf = os.path.join(work, "transmission")
    os.makedirs(conf, exist_ok=True)
    rpc = free_port()
    settings = {
        "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
        "dht-enabled": False, "lpd-enabled": False, "utp-enabled": False,
        "pex-enabled": False, "port-forwarding-enabled": False,
        "peer-port": free_port(), "peer-port-random-on-start": False,
        "download-dir": os.path.join(work, "data-t"), "start-added-torrents": False,
        "download-queue-enabled": False, "seed-queue-enabled": False,
        "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": rpc,
        "rpc-authentication-required": False, "rpc-whitelist-enabled": True,
        "rpc-whitelist": "127.0.0.1", "rpc-host-whitelist-enabled": False,
        "blocklist-enabled": False, "message-level": 1,
    }
    with open(os.path.join(conf, "settings.json"), "w") as f:
        json.dump(settings, f)
    log = open(os.path.join(work, "transmission.log"), "w")
    p = subprocess.Popen(["nice", "-n", str(nice), "transmission-daemon", "-f", "-g", conf],
                         stdout=log, stderr=subprocess.STDOUT)
    r = Rpc(rpc)
    r.wait_up(p, "transmission-daemon")
    return p, r


def start_bittern(work, binary, nice):
    rpc = free_port()
    log = open(os.path.join(work, "bittern.log"), "w")
    p = subprocess.Popen(["nice", "-n", str(nice), binary, "daemon", "-q",
                          "--config-dir", os.path.join(work, "bittern"),
                          "--rpc-port", str(rpc), "-p", str(free_port()),
                          "--peer-bind", "127.0.0.1", "--no-dht", "--no-lpd", "--no-pex"],
                         stdout=log, stderr=subprocess.STDOUT)
    r = Rpc(rpc)
    r.wait_up(p, "bittern daemon")
    return p, r


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run(n, args):
    work = os.path.join(args.out, "n%d" % n)
    reuse = args.reuse and os.path.isdir(os.path.join(work, "bittern"))
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    procs = []
    try:
        tp, tr = start_transmission(work, args.nice)
        procs.append(tp)
        bp, br = start_bittern(work, args.bittern, args.nice)
        procs.append(bp)
        daemons = [("bittern", bp, br, os.path.join(work, "data-b")),
                   ("transmission-daemon", tp, tr, os.path.join(work, "data-t"))]
        t0 = time.time()
        add_time = {}
        for name, _, r, data in daemons:
            os.makedirs(data, exist_ok=True)
            s = time.time()
            if reuse:
                # The same torrents from an earlier run's config dirs
                # (--reuse --keep): loaded at start, not added again.
                while len(r.call("torrent-get", {"fields": ["id"]})["torrents"]) < n:
                    time.sleep(1)
                add_time[name] = 0.0
                continue
            for i in range(n):
                r.call("torrent-add", {"metainfo": torrent(i), "paused": True,
                                       "download-dir": data})
            add_time[name] = time.time() - s
        added_at = time.time()
        print("added %d torrents to each in %.0f s" % (n, time.time() - t0), file=sys.stderr)
        time.sleep(args.settle)
        body = json.dumps({"method": "torrent-get",
                           "arguments": {"fields": LIST_FIELDS}}).encode()
        # One warm-up call each; check both answer N complete -l rows.
        for name, _, r, _ in daemons:
            rows = json.loads(r.raw(body))["arguments"]["torrents"]
            ok = [t for t in rows if all(isinstance(t.get(k), int) and not isinstance(
                t.get(k), bool) for k in ("eta", "id", "leftUntilDone", "rateDownload",
                                          "rateUpload", "sizeWhenDone", "status"))]
            if len(rows) != n or len(ok) != n:
                raise RuntimeError("%s: %d rows, %d printable by -l" % (name, len(rows), len(ok)))
        stats = {name: {"lat": [], "user": 0.0, "sys": 0.0, "bytes": 0}
                 for name, _, _, _ in daemons}
        load_before = os.getloadavg()
        for k in range(args.calls):
            order = daemons if k % 2 == 0 else daemons[::-1]
            for name, p, r, _ in order:
                u0, s0 = cpu(p.pid)
                t = time.perf_counter()
                reply = r.raw(body)
                dt = time.perf_counter() - t
                u1, s1 = cpu(p.pid)
                st = stats[name]
                st["lat"].append(dt)
                st["user"] += u1 - u0
                st["sys"] += s1 - s0
                st["bytes"] = len(reply)
        load_after = os.getloadavg()
        # Idle CPU over as long as the calls took, for reference.
        span = sum(sum(s["lat"]) for s in stats.values())
        idle = {}
        before = {name: cpu(p.pid) for name, p, _, _ in daemons}
        time.sleep(max(span, 2.0))
        for name, p, _, _ in daemons:
            u, s = cpu(p.pid)
            idle[name] = ((u - before[name][0]) + (s - before[name][1])) / max(span, 2.0)
        # The web page's traffic, replayed, once the adds are a minute old
        # (a torrent counts as recently active for 60 s, in both daemons).
        web = web_bytes(br, page_fields(args.repo), 62 - (time.time() - added_at))
        rss = {}
        for name, p, _, _ in daemons:
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss[name] = int(line.split()[1]) * 1024
        result = {"n": n, "calls": args.calls, "fields": LIST_FIELDS,
                  "load_before": load_before, "load_after": load_after,
                  "add_seconds": add_time, "idle_cpu_per_s": idle, "rss": rss, "web": web,
                  "daemons": {name: {"latency_median": statistics.median(s["lat"]),
                                     "latency_p90": pct(s["lat"], 0.9),
                                     "latency_min": min(s["lat"]),
                                     "cpu_user_per_call": s["user"] / args.calls,
                                     "cpu_sys_per_call": s["sys"] / args.calls,
                                     "response_bytes": s["bytes"]}
                              for name, s in stats.items()}}
        with open(os.path.join(args.out, "result-%d.json" % n), "w") as f:
            json.dump(result, f, indent=1)
        return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def table(results):
    out = ["| N | daemon | median ms | p90 ms | CPU user ms/call | CPU sys ms/call "
           "| reply bytes | RSS MiB | add s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for name, d in r["daemons"].items():
            out.append("| {:,} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:,} | {:.0f} | {:.0f} |"
                       .format(r["n"], name, d["latency_median"] * 1e3, d["latency_p90"] * 1e3,
                               d["cpu_user_per_call"] * 1e3, d["cpu_sys_per_call"] * 1e3,
                               d["response_bytes"], r["rss"].get(name, 0) / 2**20,
                               r["add_seconds"][name]))
    out.append("")
    out.append("| N | median ratio bittern/transmission | CPU ratio (user+sys) | load avg "
               "before → after |")
    out.append("|---|---:|---:|---|")
    for r in results:
        b, t = r["daemons"]["bittern"], r["daemons"]["transmission-daemon"]
        cb = b["cpu_user_per_call"] + b["cpu_sys_per_call"]
        ct = t["cpu_user_per_call"] + t["cpu_sys_per_call"]
        out.append("| {:,} | {:.2f} | {} | {} → {} |".format(
            r["n"], b["latency_median"] / t["latency_median"],
            "{:.2f}".format(cb / ct) if ct > 0 else "n/a",
            "/".join("%.2f" % x for x in r["load_before"]),
            "/".join("%.2f" % x for x in r["load_after"])))
    out.append("")
    out.append("| N | web page first load: request / response bytes | one refresh (2 s): "
               "request / response bytes | rows in the refresh |")
    out.append("|---|---:|---:|---:|")
    for r in results:
        w = r["web"]
        out.append("| {:,} | {:,} / {:,} | {:,} / {:,} | {} |".format(
            r["n"], w["load_request"], w["load_response"], w["refresh_request"],
            w["refresh_response"], w["refresh_rows"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bittern", required=True)
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--out", default="/var/tmp/bittern-daemon-rpc")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs")
    ap.add_argument("--reuse", action="store_true",
                    help="start both daemons on the config dirs a --keep run left")
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", ".."))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = [run(n, args) for n in (args.n or [1000, 10000])]
    print(table(results))


if __name__ == "__main__":
    main()
