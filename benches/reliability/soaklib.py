"""Pieces of the daemon soak (daemon_soak.py): metainfo, digests, the
daemon's RPC, its resume files, /proc sampling and child processes.

Everything stays on loopback. No third-party module: Debian's python3
(python3-libtorrent is used by lt_peer.py only).
"""

import base64
import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time

# benches/ in the tree; the soak's copied harness holds benchlib.py beside
# this file (daemon_soak.sh copies both).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import bencode, free_port  # noqa: E402,F401


# ---------------------------------------------------------------- torrents

class Torrent:
    """A torrent the harness made: its files (relative to the save dir),
    their SHA-256, piece hashes and the metainfo bytes."""

    def __init__(self, name, files, piece_length, tracker):
        # files: list of (relative path under the top, bytes)
        self.name = name
        self.piece_length = piece_length
        self.single = len(files) == 1 and files[0][0] == ""
        self.paths = [name if self.single else os.path.join(name, p) for p, _ in files]
        self.lengths = [len(b) for _, b in files]
        self.sha256 = {p: hashlib.sha256(b).hexdigest() for p, (_, b) in zip(self.paths, files)}
        blob = b"".join(b for _, b in files)
        self.pieces = [hashlib.sha1(blob[i:i + piece_length]).digest()
                       for i in range(0, len(blob), piece_length)]
        info = {"name": name, "piece length": piece_length, "pieces": b"".join(self.pieces)}
        if self.single:
            info["length"] = len(blob)
        else:
            info["files"] = [{"length": len(b), "path": p.split("/")} for p, b in files]
        self.info_hash = hashlib.sha1(bencode(info)).hexdigest()
        meta = {"info": info, "created by": "bittern soak"}
        if tracker:
            meta["announce"] = tracker
        self.metainfo = bencode(meta)
        self.size = len(blob)

    def write(self, save_dir, data_files):
        for path, (_, b) in zip(self.paths, data_files):
            full = os.path.join(save_dir, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(b)

    def b64(self):
        return base64.b64encode(self.metainfo).decode()

    def magnet(self, tracker=None):
        m = f"magnet:?xt=urn:btih:{self.info_hash}&dn={self.name}"
        if tracker:
            m += "&tr=" + tracker.replace(":", "%3A").replace("/", "%2F")
        return m

    def mismatches(self, save_dir):
        """Files under save_dir that are missing or differ (empty: byte-identical)."""
        bad = []
        for p in self.paths:
            try:
                with open(os.path.join(save_dir, p), "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != self.sha256[p]:
                        bad.append(p)
            except OSError:
                bad.append(p)
        return bad

    def read_piece(self, save_dir, i):
        """Piece i as on disk (None when a file is missing or short)."""
        start, end = i * self.piece_length, min((i + 1) * self.piece_length, self.size)
        out, off = b"", 0
        for p, n in zip(self.paths, self.lengths):
            lo, hi = max(start, off), min(end, off + n)
            if lo < hi:
                try:
                    with open(os.path.join(save_dir, p), "rb") as f:
                        f.seek(lo - off)
                        chunk = f.read(hi - lo)
                except OSError:
                    return None
                if len(chunk) != hi - lo:
                    return None
                out += chunk
            off += n
        return out

    def bad_pieces(self, save_dir, pieces):
        """Of `pieces`, those whose bytes on disk do not hash right."""
        return [i for i in pieces
                if (b := self.read_piece(save_dir, i)) is None
                or hashlib.sha1(b).digest() != self.pieces[i]]

    def file_pieces(self, k):
        """Pieces touching file k."""
        off = sum(self.lengths[:k])
        n = self.lengths[k]
        if n == 0:
            return range(0)
        return range(off // self.piece_length, (off + n - 1) // self.piece_length + 1)


def make_torrent(rnd, name, size, nfiles, piece_length, tracker):
    if nfiles == 1:
        files = [("", rnd.randbytes(size))]
    else:
        cuts = sorted(rnd.sample(range(1, size), nfiles - 1))
        bounds = [0] + cuts + [size]
        files = [(("sub/" if k % 3 == 2 else "") + f"f{k:02d}.bin",
                  rnd.randbytes(bounds[k + 1] - bounds[k])) for k in range(nfiles)]
    return Torrent(name, files, piece_length, tracker), files


# ---------------------------------------------------------------- RPC

class RpcError(Exception):
    pass


class Rpc:
    """Transmission RPC client with the session-id handshake."""

    def __init__(self, port):
        self.port, self.sid = port, ""

    def call(self, method, timeout=120, **arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                c.request("POST", "/transmission/rpc", body,
                          {"X-Transmission-Session-Id": self.sid,
                           "Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
            except OSError as e:
                raise RpcError(f"{method}: {e}") from e
            finally:
                c.close()
            if r.status == 409:
                self.sid = r.getheader("X-Transmission-Session-Id", "")
                continue
            if r.status != 200:
                raise RpcError(f"{method}: http {r.status} {data[:200]!r}")
            reply = json.loads(data)
            if reply.get("result") != "success":
                raise RpcError(f"{method}: {reply.get('result')}")
            return reply.get("arguments", {})
        raise RpcError(f"{method}: no session id")

    def wait_up(self, timeout):
        end = time.time() + timeout
        while True:
            try:
                return self.call("session-get", timeout=10)
            except RpcError:
                if time.time() > end:
                    raise
                time.sleep(0.2)


# ---------------------------------------------------------------- resume files

def parse_resume(path):
    """(have, files stamps) of a bittern resume file, None if unreadable.
    Format: storage/src/resume.rs."""
    try:
        b = open(path, "rb").read()
    except OSError:
        return None
    if len(b) < 48 + 20 or b[:8] != b"BTRNRSM\0":
        return None
    if hashlib.sha1(b[:-20]).digest() != b[-20:]:
        return "corrupt"
    version = int.from_bytes(b[8:12], "little")
    pc = int.from_bytes(b[32:40], "little")
    fc = int.from_bytes(b[40:48], "little")
    pos = 48 + (16 if version >= 2 else 0)
    nb = (pc + 7) // 8
    have = [bool(b[pos + i // 8] & (0x80 >> (i % 8))) for i in range(pc)]
    pos += nb * (2 if version >= 3 else 1)
    stamps = []
    for _ in range(fc):
        rec = b[pos:pos + 45]
        pos += 45
        if rec[0] == 0:
            stamps.append(None)
            continue
        stamps.append((int.from_bytes(rec[1:9], "little"),
                       int.from_bytes(rec[9:17], "little", signed=True),
                       int.from_bytes(rec[17:21], "little"),
                       int.from_bytes(rec[21:29], "little", signed=True),
                       int.from_bytes(rec[29:33], "little"),
                       int.from_bytes(rec[33:41], "little")))
    return have, stamps


def stamp_of(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9,
            st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9, st.st_ino)


def vouched_pieces(torrent, save_dir, resume):
    """Pieces a resume file vouches for: had, and every file they touch
    still carries its recorded stamp (what the daemon claims at its next
    start)."""
    have, stamps = resume
    ok_file = [s is not None and s == stamp_of(os.path.join(save_dir, p))
               for p, s in zip(torrent.paths, stamps)]
    out = []
    for k, good in enumerate(ok_file):
        if not good:
            continue
        for i in torrent.file_pieces(k):
            if i < len(have) and have[i]:
                out.append(i)
    # A piece spanning files counts only when all of them are good.
    bad_files = [k for k, g in enumerate(ok_file) if not g]
    spoiled = {i for k in bad_files for i in torrent.file_pieces(k)}
    return sorted(set(out) - spoiled)


# ---------------------------------------------------------------- /proc

def proc_sample(pid):
    """dict of threads, fds, rss_kib, rss_anon_kib, utime_s, stime_s."""
    try:
        st = open(f"/proc/{pid}/status").read()
        fields = dict(line.split(":", 1) for line in st.splitlines() if ":" in line)
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return {
            "threads": int(fields["Threads"].split()[0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "rss_kib": int(fields["VmRSS"].split()[0]),
            "rss_anon_kib": int(fields.get("RssAnon", "0 kB").split()[0]),
            "utime_s": int(stat[11]) / tick,
            "stime_s": int(stat[12]) / tick,
        }
    except (OSError, KeyError, IndexError, ValueError):
        return None


def thread_ticks(pid):
    """{tid: (thread name, user + system clock ticks)} of pid's live threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            stat = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[tid] = (name, int(stat[11]) + int(stat[12]))
        except (OSError, IndexError, ValueError):
            continue
    return out


def busiest_threads(before, after, seconds, n=5):
    """The n thread names that used the most CPU between two thread_ticks
    readings, as [(name, % of a core)], threads of one name summed (a
    thread that ended in between is not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    by_name = {}
    for tid, (name, ticks) in after.items():
        used = ticks - before.get(tid, (name, 0))[1]
        by_name[name] = by_name.get(name, 0) + used
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:n]
    return [(name, round(100 * t / tick / seconds, 1)) for name, t in top if t > 0]


# ---------------------------------------------------------------- children

class Child:
    """A child process in its own process group, output to a log file."""

    def __init__(self, argv, log, env=None):
        self.argv = argv
        self.log_path = log
        self.log = open(log, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.started = time.time()

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM, grace=10):
        self.send(sig)
        try:
            self.p.wait(grace)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.p.wait(10)
        self.log.close()
        return self.p.returncode

    def text(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def wait_for(self, needle, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for line in self.text().splitlines():
                if needle in line:
                    return line
            if not self.alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"no {needle!r} from {self.argv[:3]} in {timeout}s:\n"
                           f"{self.text()[-1500:]}")


def free_ports(n):
    """n distinct free TCP ports whose UDP twin is free too."""
    import socket
    out = set()
    while len(out) < n:
        p = free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            out.add(p)
        except OSError:
            pass
        finally:
            u.close()
    return sorted(out)


def jitter(rnd, mean):
    return rnd.uniform(0.5 * mean, 1.5 * mean)
