"""Web-seed benchmark driver (see run.sh). One run per client, same data,
same nginx, one after the other; wall time from process start to exit,
user and system CPU from wait4; the output compared with cmp."""
import argparse
import datetime
import os
import random
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import free_port  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MB = 1e6


def make_data(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    rng = random.Random(19)
    with open(path + ".tmp", "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(rng.randbytes(n))
            left -= n
    os.rename(path + ".tmp", path)


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def start_nginx(root, work):
    port = free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {work}/nginx.pid; error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{ default_type application/octet-stream; sendfile on;
  log_format ranges '$request $status $http_range $body_bytes_sent';
  access_log {work}/access.log ranges;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", work, "-e", f"{work}/error.log"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("nginx did not start")


def timed(argv, log, cwd=None, timeout=900):
    """Runs argv; returns (ok, wall, user, sys)."""
    with open(log, "wb") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode == 0, wall, ru.ru_utime, ru.ru_stime


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache", default="/var/tmp/bittern-bench-webseed")
    ap.add_argument("--results", default=os.path.join(REPO, "benches", "RESULTS-webseed.md"))
    ap.add_argument("--netns-note", default="")
    ap.add_argument("--command", default="")
    a = ap.parse_args()
    size = (256 << 20) if a.quick else (1 << 30)
    name = "ws256m.bin" if a.quick else "ws1g.bin"
    bittern = os.path.join(REPO, "target", "release", "bittern")
    stamp = datetime.datetime.utcnow().strftime("%Y%m%d-%H%M%S")
    run = os.path.join(a.cache, "runs", stamp)
    data = os.path.join(a.cache, "data")
    os.makedirs(run)
    os.makedirs(data, exist_ok=True)
    src = os.path.join(data, name)
    make_data(src, size)
    warm(src)
    load0 = os.getloadavg()
    started = datetime.datetime.utcnow()
    nginx, port = start_nginx(data, run)
    url = f"http://127.0.0.1:{port}/{name}"
    torrent = os.path.join(run, name + ".torrent")
    subprocess.run([bittern, "create", "-q", src, "-o", torrent, "--piece-length", "1MiB",
                    "--web-seed", url], check=True)
    results = []
    try:
        clients = [
            ("bittern", lambda out: [bittern, "download", torrent, "-d", out, "-p", "0",
                                     "--bind", "127.0.0.1", "--exit-on-complete"]),
            ("libtorrent", lambda out: ["/usr/bin/python3", os.path.join(HERE, "lt_webseed.py"),
                                        torrent, out]),
            ("aria2c (torrent url-list)", lambda out: [
                "aria2c", "-q", "-d", out, "--seed-time=0", "--enable-dht=false",
                "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--listen-port=6990", "--file-allocation=falloc", "--disable-ipv6=true",
                "--follow-torrent=mem", torrent]),
            ("aria2c (direct URL, -x1)", lambda out: [
                "aria2c", "-q", "-d", out, "--file-allocation=falloc", "--disable-ipv6=true",
                url]),
        ]
        for tag, argv in clients:
            out = os.path.join(run, "out-" + tag.split()[0] + str(len(results)))
            os.makedirs(out)
            before = os.path.getsize(os.path.join(run, "access.log")) \
                if os.path.exists(os.path.join(run, "access.log")) else 0
            ok, wall, user, sys_ = timed(argv(out), os.path.join(run, f"{len(results)}.log"))
            got = os.path.join(out, name)
            same = ok and os.path.exists(got) and subprocess.run(
                ["cmp", "-s", src, got]).returncode == 0
            with open(os.path.join(run, "access.log"), "rb") as f:
                f.seek(before)
                reqs = f.read().count(b"\n")
            results.append(dict(tag=tag, ok=same, wall=wall, user=user, sys=sys_, reqs=reqs))
            print(f"{tag}: ok={same} wall={wall:.2f}s user={user:.2f} sys={sys_:.2f} "
                  f"requests={reqs}", file=sys.stderr)
            if os.path.exists(got):
                os.truncate(got, 0)
    finally:
        nginx.kill()
        nginx.wait()
    load1 = os.getloadavg()
    write(a, results, size, name, started, load0, load1, run)


def write(a, results, size, name, started, load0, load1, run):
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    lines = [
        "# bittern web-seed benchmark — results", "",
        "Generated by `benches/webseed/run.sh`. One run per client (the machine is shared; "
        "compare ratios, not absolute figures).", "",
        "## Run", "",
        f"- date: {started:%Y-%m-%d %H:%M:%S} UTC",
        f"- command: `{a.command}`",
        f"- network: {a.netns_note}",
        f"- bittern git {git}; libtorrent 2.0.8 (python3-libtorrent); "
        f"{subprocess.run(['aria2c', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}; "
        f"{subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}",
        f"- CPU model: {cpu_model()}, nproc {os.cpu_count()}, kernel {os.uname().release}",
        f"- load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
        f"at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}",
        f"- run dir (logs, nginx access log with the ranges): `{run}`", "",
        "## Method", "",
        f"- `{name}`: {size >> 20} MiB of seeded pseudo-random bytes, in the page cache before the "
        "run; served by nginx (sendfile on, one worker) on 127.0.0.1; a `bittern create` torrent "
        "(1 MiB pieces) whose only source is its `url-list` URL (no tracker, no peers).",
        "- Each client downloads it into an empty directory; wall time from process start to "
        "exit, user and system CPU from wait4 (the client process only; nginx not counted); "
        "the result compared with `cmp`.",
        "- bittern: `bittern download T -d DIR -p 0 --bind 127.0.0.1 --exit-on-complete`; "
        "libtorrent: `benches/webseed/lt_webseed.py` (DHT/LSD/UPnP/NAT-PMP/uTP off, exits once "
        "seeding, Python start-up included); aria2c: the same torrent (`--seed-time=0`, DHT/LPD/PEX "
        "off), and the plain URL (one connection) as an HTTP reference.",
        "- bittern `--exit-on-complete` exits once every piece is verified, without waiting "
        "for the disk to catch up (README); libtorrent exits after removing its torrent; aria2c "
        "when it is done. Page cache of the written file is not dropped between clients; each "
        "written file is truncated to nothing after its check.",
        "- MB/s = file bytes / wall time (MB = 10^6 bytes). `requests`: lines in nginx's access "
        "log during the client's run.", "",
        "## Results", "",
        "| client | ok | wall s | MB/s | user CPU s | system CPU s | CPU s total | requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mbs = size / MB / r["wall"]
        lines.append(f"| {r['tag']} | {'yes' if r['ok'] else 'NO'} | {r['wall']:.2f} | {mbs:.0f} | "
                     f"{r['user']:.2f} | {r['sys']:.2f} | {r['user'] + r['sys']:.2f} | {r['reqs']} |")
    b = results[0]
    lines += ["", "### Ratios (bittern against each; MB/s × > 1 and the others < 1 favour bittern)", "",
              "| vs | MB/s × | wall × | user CPU × | system CPU × | total CPU × |",
              "|---|---|---|---|---|---|"]

    def ratio(x, y):
        return f"{x / y:.2f}" if y > 0 else "–"
    for r in results[1:]:
        lines.append(f"| {r['tag']} | {ratio(r['wall'], b['wall'])} | {ratio(b['wall'], r['wall'])} | "
                     f"{ratio(b['user'], r['user'])} | {ratio(b['sys'], r['sys'])} | "
                     f"{ratio(b['user'] + b['sys'], r['user'] + r['sys'])} |")
    with open(a.results, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {a.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
