#!/usr/bin/python3
"""Daemon soak (issue 25): one `bittern daemon` holding many torrents for
hours under churn, on loopback only.

- The daemon holds --bulk small torrents it seeds from their data (a
  quarter announce to a `bittern tracker`, the rest are trackerless), --a
  torrents it seeds to partner leechers, and --b torrents it downloads from
  partner seeders; each B torrent, once complete and checked, is removed
  with its data and added again (as a .torrent or as a magnet link, with or
  without a tracker) into a new directory.
- Partners (at most --partners at once) join, finish, leave, or are
  SIGKILLed/SIGTERMed: `bittern download`/`bittern seed`, libtorrent
  (lt_peer.py) and aria2c; some over uTP only, some with encryption
  required. DHT and PEX on everywhere but aria2 (DHT off there); the DHT
  bootstrap node is a loopback libtorrent node.
- RPC churn: bulk torrents removed and added again, `torrent-set`
  (labels, limits, priority), stop/start, `session-set`.
- The daemon is SIGKILLed --restarts times, evenly over the run.

Checks (any failure: exit 1):
- every completed download (the daemon's and each partner's) is
  byte-identical (SHA-256 per file);
- before each kill the daemon's list equals what the harness was told
  (acknowledged RPC changes), and after the restart the list and the
  settings equal those before the kill;
- after each kill, every piece the torrent's resume file vouches for (had,
  and its files still carry the recorded stamps) hashes right on disk;
  after each restart and every few minutes, every file the daemon reports
  complete (fileStats) hashes right on disk;
- at the end, once every torrent is removed, threads and fds are back at
  the baseline of the empty daemon; the data the daemon and partners
  seeded from is unchanged.

Threads, fds, RSS, RssAnon and CPU of the daemon are sampled from /proc
every --sample seconds into samples.csv (the busiest threads per sample into threads.csv);
summary.json holds the figures.
daemon_soak_plot.py draws samples.csv.

    daemon_soak.py --out DIR [--short] [--minutes 120] [--restarts 12] ...
"""
import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soaklib import (Child, Rpc, RpcError, free_ports, jitter, make_torrent,  # noqa: E402
                     busiest_threads, parse_resume, proc_sample, thread_ticks,
                     vouched_pieces)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LT_PYTHON = "/usr/bin/python3"
COMPARED = ["hashString", "name", "downloadDir", "labels", "uploadLimit", "uploadLimited",
            "downloadLimit", "downloadLimited", "bandwidthPriority", "seedRatioMode",
            "queuePosition"]
SESSION_KEYS = {  # session-set churn: key -> values
    "alt-speed-down": range(50, 5000), "alt-speed-up": range(50, 5000),
    "peer-limit-per-torrent": range(60, 200), "idle-seeding-limit": range(30, 600),
    "queue-stalled-minutes": range(30, 90), "speed-limit-down": range(100, 90000),
    "speed-limit-up": range(100, 90000),
}
LABELS = [[], ["soak"], ["a", "b"], ["x y"], ["long-label-" + "z" * 40]]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Soak:
    def __init__(self, args):
        self.a = args
        self.rnd = random.Random(args.seed)
        self.out = os.path.abspath(args.out)
        for d in ("data/bulk", "data/a", "data/b", "dl", "leech", "logs", "config"):
            os.makedirs(os.path.join(self.out, d), exist_ok=True)
        self.logs = os.path.join(self.out, "logs")
        self.failures = []
        self.stats = {k: 0 for k in (
            "restarts", "daemon_downloads_checked", "partner_downloads_checked",
            "partners_started", "partners_sigkilled", "partners_sigtermed", "partner_stalls",
            "partner_errors", "rpc_ops", "bulk_removed", "bulk_added", "magnets_added",
            "files_added", "torrent_sets", "session_sets", "stop_start",
            "resume_pieces_checked", "claimed_pieces_checked", "list_checks",
            "resume_files_read", "resume_missing")}
        self.stats["by_kind"] = {}
        self.phase = "setup"
        self.daemon = None
        self.incarnation = 0
        self.partners = []  # dicts
        self.model = {}  # hash -> expected fields
        self.torrents = {}  # hash -> (Torrent, kind)
        self.removed_bulk = []  # hashes waiting to be added again
        self.b_state = {}  # hash -> {"dir":..., "readd_at":...}
        self.n_torrents = 0
        self.lock = threading.Lock()
        self.csv = open(os.path.join(self.out, "samples.csv"), "w")
        # per sample: the daemon's busiest threads since the last one
        self.threads_csv = open(os.path.join(self.out, "threads.csv"), "w")
        self.threads_csv.write("t_s,incarnation,cpu_pct,busiest (thread:% of a core)\n")
        # per sample: the daemon's threads by kind (pw-: a peer's writer, which
        # dials and handshakes before a reader exists; pr-: its reader, so a
        # connection is up; pm-: a metadata fetch), its socket fds, and the
        # peers its torrents report connected over RPC
        self.census_csv = open(os.path.join(self.out, "census.csv"), "w")
        self.census_csv.write("t_s,incarnation,threads,pw,pr,pm,other,socket_fds,"
                              "peers_connected\n")
        self.csv.write("t_s,phase,incarnation,pid,torrents,partners,threads,fds,rss_kib,"
                       "rss_anon_kib,cpu_user_s,cpu_sys_s,cpu_pct,load1\n")
        self.t0 = time.time()
        self.samples = []
        self.stop_sampler = threading.Event()
        self.gen = 0

    # ------------------------------------------------------------ setup

    def fail(self, what):
        log("FAIL:", what)
        self.failures.append(what)

    def make_data(self):
        a = self.a
        r = random.Random(a.seed)
        t0 = time.time()
        for k in range(a.bulk):
            tracker = self.tracker if k % 4 == 0 else None
            size = r.randint(a.bulk_min, a.bulk_max)
            t, files = make_torrent(r, f"bulk{k:05d}.bin", size, 1, 16384, tracker)
            t.write(os.path.join(self.out, "data/bulk"), files)
            self.torrents[t.info_hash] = (t, "bulk")
        for kind, n in (("a", a.a), ("b", a.b)):
            for k in range(n):
                size = r.randint(a.swarm_min, a.swarm_max)
                nfiles = 1 if k % 2 == 0 else r.randint(2, 6)
                plen = 65536 if size < (4 << 20) else 262144
                name = f"{kind}{k:02d}" + (".bin" if nfiles == 1 else "")
                t, files = make_torrent(r, name, size, nfiles, plen, self.tracker)
                t.write(os.path.join(self.out, "data", kind), files)
                self.torrents[t.info_hash] = (t, kind)
                with open(os.path.join(self.out, "data", f"{name}.torrent"), "wb") as f:
                    f.write(t.metainfo)
        log(f"data: {len(self.torrents)} torrents in {time.time() - t0:.1f}s")

    def torrent_file(self, t):
        return os.path.join(self.out, "data", f"{t.name}.torrent")

    def start_daemon(self):
        self.incarnation += 1
        argv = [self.a.bittern, "daemon", "--config-dir", os.path.join(self.out, "config"),
                "--rpc-port", str(self.rpc_port), "-p", str(self.peer_port),
                "--peer-bind", "127.0.0.1", "--dht-bootstrap", self.dht_node,
                "--encryption", "preferred", "--status-interval", "60s"]
        self.daemon = Child(argv, os.path.join(self.logs, f"daemon{self.incarnation:02d}.log"))
        t = time.time()
        self.daemon.wait_for("rpc listening on", 120)
        self.rpc = Rpc(self.rpc_port)
        self.rpc.wait_up(60)
        return time.time() - t

    def setup(self):
        a = self.a
        self.tracker_proc = Child([a.bittern, "tracker", "--bind", "127.0.0.1", "-p", "0",
                                   "--interval", a.tracker_interval],
                                  os.path.join(self.logs, "tracker.log"))
        self.tracker = self.tracker_proc.wait_for("announce URL: ", 30).split(
            "announce URL: ")[1].strip()
        self.dht_proc = Child([LT_PYTHON, os.path.join(HERE, "lt_peer.py"), "dht"],
                              os.path.join(self.logs, "dht.log"))
        self.dht_node = "127.0.0.1:" + self.dht_proc.wait_for("PORT", 30).split()[-1]
        self.make_data()
        self.rpc_port, self.peer_port = free_ports(2)
        self.start_daemon()
        self.rpc.call("session-set", **{"download-queue-size": 50, "seed-queue-enabled": False,
                                        "peer-limit-global": 2000})
        self.phase = "baseline"
        self.sampler = threading.Thread(target=self.sample_loop, daemon=True)
        self.sampler.start()
        time.sleep(a.settle)
        self.baseline = proc_sample(self.daemon.p.pid)
        log("baseline (empty daemon):", self.baseline)
        self.phase = "adding"
        t0 = time.time()
        for h, (t, kind) in self.torrents.items():
            if kind == "b":
                self.b_state[h] = {"dir": None, "readd_at": 0}
                continue
            self.add_file(h, os.path.join(self.out, "data", kind))
        self.add_time = time.time() - t0
        log(f"added {len(self.model)} torrents in {self.add_time:.1f}s")

    # ------------------------------------------------------------ model

    def expected(self, h, t, ddir):
        return {"hashString": h, "name": t.name, "downloadDir": ddir, "labels": [],
                "uploadLimit": 100, "uploadLimited": False, "downloadLimit": 100,
                "downloadLimited": False, "bandwidthPriority": 0, "seedRatioMode": 0,
                "stopped": False}

    def op(self, method, **kw):
        self.stats["rpc_ops"] += 1
        return self.rpc.call(method, **kw)

    def add_file(self, h, ddir, paused=False):
        t, _ = self.torrents[h]
        r = self.op("torrent-add", metainfo=t.b64(), **{"download-dir": ddir, "paused": paused})
        got = r.get("torrent-added") or r.get("torrent-duplicate")
        if not got or got.get("hashString") != h:
            self.fail(f"torrent-add {t.name}: {r}")
        self.model[h] = self.expected(h, t, ddir)
        self.model[h]["stopped"] = paused
        self.stats["files_added"] += 1

    def add_magnet(self, h, ddir, with_tracker):
        t, _ = self.torrents[h]
        r = self.op("torrent-add", filename=t.magnet(self.tracker if with_tracker else None),
                    **{"download-dir": ddir})
        got = r.get("torrent-added") or {}
        if got.get("hashString") != h:
            self.fail(f"magnet add {t.name}: {r}")
        self.model[h] = self.expected(h, t, ddir)
        self.stats["magnets_added"] += 1

    def remove(self, h, delete):
        self.op("torrent-remove", ids=[h], **{"delete-local-data": delete})
        del self.model[h]

    def daemon_list(self):
        fields = COMPARED + ["status", "errorString", "percentDone", "fileStats", "files"]
        return {t["hashString"]: t for t in self.rpc.call("torrent-get", fields=fields)["torrents"]}

    @staticmethod
    def view(t):
        v = {k: t.get(k) for k in COMPARED if k != "queuePosition"}
        v["stopped"] = t.get("status") == 0
        return v

    def check_list(self, listed, what):
        """The daemon's list equals the model (what the RPC acknowledged)."""
        self.stats["list_checks"] += 1
        bad = []
        for h in set(listed) | set(self.model):
            want = self.model.get(h)
            got = self.view(listed[h]) if h in listed else None
            if want != got:
                bad.append((h[:8], want, got))
        if bad:
            self.fail(f"{what}: {len(bad)} torrents differ from the acknowledged state: "
                      f"{bad[:3]}")
        return not bad

    # ------------------------------------------------------------ claims

    def check_resume_claims(self, sample):
        """Daemon down: every piece a resume file vouches for hashes right."""
        for h in sample:
            t, _ = self.torrents[h]
            res = parse_resume(os.path.join(self.out, "config/resume", f"{h}.resume"))
            if res is None:
                self.stats["resume_missing"] += 1
                continue
            self.stats["resume_files_read"] += 1
            if res == "corrupt":
                self.fail(f"resume file of {t.name} fails its checksum")
                continue
            ddir = self.model[h]["downloadDir"]
            pieces = vouched_pieces(t, ddir, res)
            bad = t.bad_pieces(ddir, pieces)
            self.stats["resume_pieces_checked"] += len(pieces)
            if bad:
                self.fail(f"{t.name}: resume vouches for pieces {bad[:10]} not on disk")

    def check_rpc_claims(self, listed, sample):
        """Every file the daemon says is complete hashes right on disk."""
        for h in sample:
            t, _ = self.torrents[h]
            row = listed.get(h)
            if not row or not row.get("fileStats"):
                continue
            ddir = row["downloadDir"]
            pieces = set()
            for k, fs in enumerate(row["fileStats"]):
                if k < len(t.lengths) and fs["bytesCompleted"] == t.lengths[k]:
                    pieces.update(t.file_pieces(k))
            bad = t.bad_pieces(ddir, sorted(pieces))
            self.stats["claimed_pieces_checked"] += len(pieces)
            if bad:
                # A piece spanning into a file not yet complete is fine only
                # if its bytes are there: the daemon claims the file whole.
                self.fail(f"{t.name}: the daemon reports files complete whose pieces "
                          f"{bad[:10]} are not on disk")

    def sample_hashes(self, n):
        hs = list(self.model)
        keep = [h for h in hs if self.torrents[h][1] != "bulk"]
        bulk = [h for h in hs if self.torrents[h][1] == "bulk"]
        return keep + self.rnd.sample(bulk, min(n, len(bulk)))

    # ------------------------------------------------------------ restarts

    def kill_and_restart(self):
        listed = self.daemon_list()
        self.check_list(listed, f"before kill {self.incarnation}")
        session = self.rpc.call("session-get")
        self.daemon.send(signal.SIGKILL)
        self.daemon.p.wait(30)
        self.daemon.log.close()
        if self.a.inject == "lose-record" and self.stats["restarts"] == 0:
            # A fault the checks must catch: one record gone from the store.
            victim = sorted(self.model)[0]
            os.remove(os.path.join(self.out, "config/torrents", f"{victim}.json"))
        if self.a.inject == "flip-byte" and self.stats["restarts"] == 0:
            # A piece claimed but not on disk: a byte of a seeded file flipped.
            victim = next(h for h in sorted(self.model) if self.torrents[h][1] == "a")
            t = self.torrents[victim][0]
            with open(os.path.join(self.model[victim]["downloadDir"], t.paths[0]), "r+b") as f:
                b = f.read(1)
                f.seek(0)
                f.write(bytes([b[0] ^ 1]))
        self.check_resume_claims(self.sample_hashes(self.a.claim_sample))
        took = self.start_daemon()
        self.stats["restarts"] += 1
        # Up: the list (and each torrent's stopped state, once checked)
        # equals the one before the kill.
        end = time.time() + 120
        while True:
            after = self.daemon_list()
            diff = [h for h in set(listed) | set(after)
                    if (h in listed) != (h in after)
                    or self.view(listed[h]) != self.view(after[h])]
            if not diff or time.time() > end:
                break
            time.sleep(1)
        if diff:
            h = diff[0]
            self.fail(f"restart {self.incarnation}: {len(diff)} torrents differ from before "
                      f"the kill, e.g. {h}: {listed.get(h) and self.view(listed[h])} -> "
                      f"{after.get(h) and self.view(after[h])}")
        qp = [h[:8] for h in listed if h in after
              and listed[h]["queuePosition"] != after[h]["queuePosition"]]
        if qp:
            self.fail(f"restart {self.incarnation}: queue positions changed: {qp[:5]}")
        now = self.rpc.call("session-get")
        changed = {k: (session.get(k), now.get(k)) for k in set(session) | set(now)
                   if k not in ("session-id", "download-dir-free-space")
                   and session.get(k) != now.get(k)}
        if changed:
            self.fail(f"restart {self.incarnation}: settings reverted: {changed}")
        self.check_rpc_claims(after, self.sample_hashes(self.a.claim_sample))
        log(f"restart {self.incarnation - 1} survived: up in {took:.1f}s, "
            f"{len(after)} torrents, list and settings equal")

    # ------------------------------------------------------------ partners

    def spawn_partner(self):
        a, r = self.a, self.rnd
        client = r.choice(["bittern", "bittern", "lt", "lt", "aria2"])
        role = "seed" if r.random() < 0.35 else "leech"
        want = "b" if role == "seed" else r.choice("aaab")
        pool = [h for h, (_, k) in self.torrents.items() if k == want]
        h = r.choice(pool)
        t, kind = self.torrents[h]
        utp = client != "aria2" and r.random() < 0.3
        enc = r.random() < 0.3
        self.gen += 1
        name = f"p{self.gen:05d}-{client}-{role}-{t.name}" + ("-utp" if utp else "") + \
            ("-enc" if enc else "")
        ddir = os.path.join(self.out, "data", kind) if role == "seed" else \
            os.path.join(self.out, "leech", name)
        os.makedirs(ddir, exist_ok=True)
        tf = self.torrent_file(t)
        peer = f"127.0.0.1:{self.peer_port}"
        if client == "bittern":
            argv = [a.bittern, "seed" if role == "seed" else "download", tf, "-d", ddir,
                    "--bind", "127.0.0.1", "-p", "0", "--dht-bootstrap", self.dht_node,
                    "--status-interval", "60s", "--encryption", "require" if enc else "prefer"]
            if utp:
                argv += ["--no-tcp"]
            if role == "leech":
                argv += ["--seed-time", f"{int(r.uniform(0, a.linger))}s"]
                if a.rate:
                    argv += ["--download-limit", f"{a.rate}B/s"]
            if r.random() < 0.5:
                argv += ["--peer", peer]
        elif client == "lt":
            argv = [LT_PYTHON, os.path.join(HERE, "lt_peer.py"), role, tf, ddir,
                    "--dht", self.dht_node, "--linger", str(r.uniform(0, a.linger))]
            argv += ["--utp-only"] if utp else []
            argv += ["--encrypt"] if enc else []
            argv += ["--rate", str(a.rate)] if a.rate else []
            if r.random() < 0.5:
                argv += ["--peer", peer]
        else:
            argv = ["aria2c", "-d", ddir, "--enable-dht=false", "--enable-dht6=false",
                    "--bt-enable-lpd=false", "--disable-ipv6=true", "--interface=127.0.0.1",
                    "--listen-port=" + str(free_ports(1)[0]), "--file-allocation=none",
                    "--summary-interval=0", "--console-log-level=warn",
                    "--bt-require-crypto=" + ("true" if enc else "false"),
                    "--follow-torrent=false", "--auto-save-interval=0"]
            if role == "seed":
                argv += ["-V", "--seed-ratio=0.0"]
            else:
                argv += [f"--seed-time={r.uniform(0, a.linger) / 60:.2f}"]
                argv += [f"--max-download-limit={a.rate}"] if a.rate else []
            argv += [tf]
        fate = "finish"
        x = r.random()
        if role == "seed":
            fate = "kill" if x < 0.5 else "term"
            end = time.time() + r.uniform(a.seed_life / 3, a.seed_life)
        elif x < 0.2:
            fate, end = "kill", time.time() + r.uniform(1, a.seed_life / 2)
        elif x < 0.3:
            fate, end = "term", time.time() + r.uniform(1, a.seed_life / 2)
        else:
            end = time.time() + a.leech_timeout
        child = Child(argv, os.path.join(self.logs, name + ".log"))
        self.partners.append({"child": child, "name": name, "role": role, "fate": fate,
                              "end": end, "hash": h, "dir": ddir, "client": client})
        self.stats["partners_started"] += 1
        k = f"{client}-{role}"
        self.stats["by_kind"][k] = self.stats["by_kind"].get(k, 0) + 1

    def reap_partners(self, finishing=False):
        now = time.time()
        for p in list(self.partners):
            c = p["child"]
            if c.alive() and (now >= p["end"] or finishing):
                if p["fate"] == "kill" and not finishing:
                    c.send(signal.SIGKILL)
                    self.stats["partners_sigkilled"] += 1
                elif p["fate"] == "term" and not finishing:
                    c.send(signal.SIGTERM)
                    self.stats["partners_sigtermed"] += 1
                else:
                    if not finishing:
                        self.stats["partner_stalls"] += 1
                        log(f"partner {p['name']} did not finish in time")
                    c.send(signal.SIGKILL)
                p["fate"] = "ended"
                try:
                    c.p.wait(15)
                except Exception:  # noqa: BLE001 - still alive: tried again next tick
                    continue
            if c.alive():
                continue
            c.log.close()
            self.partners.remove(p)
            if p["fate"] == "finish" and p["role"] == "leech":
                t, _ = self.torrents[p["hash"]]
                if c.p.returncode != 0:
                    self.stats["partner_errors"] += 1
                    log(f"partner {p['name']} exited {c.p.returncode}: {c.text()[-300:]!r}")
                else:
                    bad = t.mismatches(p["dir"])
                    if bad:
                        self.fail(f"partner {p['name']}: finished with {bad} not identical")
                    else:
                        self.stats["partner_downloads_checked"] += 1
            if p["role"] == "leech":
                shutil.rmtree(p["dir"], ignore_errors=True)

    # ------------------------------------------------------------ RPC churn

    def b_lifecycle(self, listed):
        now = time.time()
        for h, st in self.b_state.items():
            t, _ = self.torrents[h]
            if h in self.model:
                row = listed.get(h)
                if row and row.get("percentDone") == 1 and row.get("files"):
                    bad = t.mismatches(st["dir"])
                    if bad:
                        # The daemon says done; maybe the disk lags a tick.
                        time.sleep(1)
                        bad = t.mismatches(st["dir"])
                    if bad:
                        self.fail(f"daemon download {t.name}: {bad} not identical")
                    else:
                        self.stats["daemon_downloads_checked"] += 1
                    self.remove(h, True)
                    shutil.rmtree(st["dir"], ignore_errors=True)
                    st["readd_at"] = now + self.rnd.uniform(0, self.a.op_every * 4)
            elif now >= st["readd_at"]:
                self.gen += 1
                st["dir"] = os.path.join(self.out, "dl", f"{t.name}-{self.gen:05d}")
                os.makedirs(st["dir"])
                x = self.rnd.random()
                if x < 0.4:
                    self.add_file(h, st["dir"])
                else:
                    self.add_magnet(h, st["dir"], with_tracker=x < 0.8)

    def random_op(self):
        r = self.rnd
        bulk = [h for h in self.model if self.torrents[h][1] == "bulk"]
        x = r.random()
        if x < 0.25 and bulk:
            h = r.choice(bulk)
            self.remove(h, False)
            self.removed_bulk.append(h)
            self.stats["bulk_removed"] += 1
        elif x < 0.45 and self.removed_bulk:
            h = self.removed_bulk.pop(r.randrange(len(self.removed_bulk)))
            self.add_file(h, os.path.join(self.out, "data/bulk"), paused=r.random() < 0.2)
            self.stats["bulk_added"] += 1
        elif x < 0.7 and bulk:
            h = r.choice(bulk)
            m = self.model[h]
            change = {"labels": r.choice(LABELS), "uploadLimit": r.randint(1, 5000),
                      "uploadLimited": r.random() < 0.3, "downloadLimit": r.randint(1, 5000),
                      "bandwidthPriority": r.randint(-1, 1), "seedRatioMode": r.choice([0, 2])}
            keys = r.sample(sorted(change), r.randint(1, 3))
            self.op("torrent-set", ids=[h], **{k: change[k] for k in keys})
            for k in keys:
                m[k] = change[k]
            self.stats["torrent_sets"] += 1
        elif x < 0.85 and bulk:
            h = r.choice(bulk)
            m = self.model[h]
            self.op("torrent-start" if m["stopped"] else "torrent-stop", ids=[h])
            m["stopped"] = not m["stopped"]
            self.stats["stop_start"] += 1
        else:
            k = r.choice(sorted(SESSION_KEYS))
            self.op("session-set", **{k: r.choice(SESSION_KEYS[k])})
            self.stats["session_sets"] += 1

    # ------------------------------------------------------------ sampling

    def sample_loop(self):
        last = None
        while not self.stop_sampler.is_set():
            d = self.daemon
            inc = self.incarnation  # before sampling: a restart may follow
            s = proc_sample(d.p.pid) if d else None
            now = time.time()
            if s:
                cpu = s["utime_s"] + s["stime_s"]
                threads = thread_ticks(d.p.pid)
                pct = ""
                if last and last[0] == d.p.pid and now > last[1]:
                    pct = f"{100 * (cpu - last[2]) / (now - last[1]):.1f}"
                    top = busiest_threads(last[3], threads, now - last[1])
                    self.threads_csv.write(f"{round(now - self.t0, 1)},{self.incarnation},{pct},"
                                           + " ".join(f"{n}:{p}" for n, p in top) + "\n")
                    self.threads_csv.flush()
                last = (d.p.pid, now, cpu, threads)
                if threads:  # empty: the process is gone (a restart)
                    self.census(d.p.pid, now, threads, inc)
                row = dict(s, t_s=round(now - self.t0, 1), phase=self.phase,
                           incarnation=self.incarnation, pid=d.p.pid,
                           torrents=len(self.model), partners=len(self.partners),
                           cpu_pct=pct, load1=os.getloadavg()[0])
                with self.lock:
                    self.samples.append(row)
                    self.csv.write(",".join(str(row[k]) for k in (
                        "t_s", "phase", "incarnation", "pid", "torrents", "partners",
                        "threads", "fds", "rss_kib", "rss_anon_kib", "utime_s", "stime_s",
                        "cpu_pct", "load1")) + "\n")
                    self.csv.flush()
            self.stop_sampler.wait(self.a.sample)

    def census(self, pid, now, threads, inc):
        kinds = {"pw": 0, "pr": 0, "pm": 0, "other": 0}
        for name, _ in threads.values():
            k = name[:2] if name[:3] in ("pw-", "pr-", "pm-") else "other"
            kinds[k] += 1
        sockets = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                except OSError:
                    pass
        except OSError:
            pass
        try:
            got = self.rpc.call("torrent-get", timeout=5, fields=["peersConnected"])["torrents"]
            peers = sum(t.get("peersConnected", 0) for t in got)
        except Exception:  # the daemon may be restarting: leave it blank
            peers = ""
        self.census_csv.write(f"{round(now - self.t0, 1)},{inc},{len(threads)},"
                              f"{kinds['pw']},{kinds['pr']},{kinds['pm']},{kinds['other']},"
                              f"{sockets},{peers}\n")
        self.census_csv.flush()

    # ------------------------------------------------------------ run

    def run(self):
        a = self.a
        self.setup()
        self.phase = "churn"
        start = time.time()
        end = start + a.minutes * 60
        span = (end - start) / a.restarts
        kills = [start + span * (k + 0.5) + self.rnd.uniform(-span / 4, span / 4)
                 for k in range(a.restarts)]
        next_op = next_claims = time.time()
        last_status = 0
        while time.time() < end:
            now = time.time()
            self.reap_partners()
            while len(self.partners) < a.partners:
                self.spawn_partner()
            try:
                if kills and now >= kills[0]:
                    kills.pop(0)
                    self.kill_and_restart()
                listed = self.daemon_list()
                self.b_lifecycle(listed)
                if now >= next_op:
                    self.random_op()
                    next_op = now + jitter(self.rnd, a.op_every)
                if now >= next_claims:
                    self.check_rpc_claims(listed, self.sample_hashes(a.claim_sample))
                    next_claims = now + a.claims_every
            except RpcError as e:
                self.fail(f"rpc: {e}")
                time.sleep(1)
            if now - last_status >= a.status_every:
                last_status = now
                st = {k: v for k, v in self.stats.items() if k != "by_kind"}
                log(f"t={now - start:.0f}s torrents={len(self.model)} "
                    f"partners={len(self.partners)} {st}")
            time.sleep(a.tick)
        return self.finish()

    def finish(self):
        a = self.a
        self.phase = "draining"
        self.reap_partners(finishing=True)
        listed = self.daemon_list()
        self.check_list(listed, "end of churn")
        loaded = proc_sample(self.daemon.p.pid)
        # Remove everything: back to an empty daemon.
        self.rpc.call("torrent-remove", ids=list(self.model))
        for h in list(self.model):
            del self.model[h]
        for st in self.b_state.values():
            if st["dir"]:
                shutil.rmtree(st["dir"], ignore_errors=True)
        self.phase = "removed"
        left = self.rpc.call("torrent-get", fields=["id"])["torrents"]
        if left:
            self.fail(f"{len(left)} torrents left after removing all")
        time.sleep(a.settle)
        b = self.baseline
        # Threads that only end after an idle timeout (announcer workers,
        # 10 s) get a minute more to go; then the count must be back.
        end = time.time() + 60
        while True:
            after = proc_sample(self.daemon.p.pid)
            if after["threads"] <= b["threads"] + 2 or time.time() > end:
                break
            time.sleep(1)
        log("loaded:", loaded)
        log("after removal:", after)
        if after["threads"] > b["threads"] + 2:
            pid = self.daemon.p.pid
            names = []
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    names.append(open(f"/proc/{pid}/task/{t}/comm").read().strip())
                except OSError:
                    pass
            self.fail(f"threads {after['threads']} after removal, baseline {b['threads']}: "
                      f"{sorted(names)}")
        if after["fds"] > b["fds"] + 4:
            self.fail(f"fds {after['fds']} after removal, baseline {b['fds']}: "
                      f"{sorted(os.readlink(f'/proc/{self.daemon.p.pid}/fd/{x}') for x in os.listdir(f'/proc/{self.daemon.p.pid}/fd'))}")
        # Seeded data is what it was.
        for h, (t, kind) in self.torrents.items():
            bad = t.mismatches(os.path.join(self.out, "data", kind))
            if bad:
                self.fail(f"source data of {t.name} changed: {bad}")
        self.stop_sampler.set()
        self.sampler.join()
        code = self.daemon.stop(signal.SIGTERM, 60)
        if code != 0:
            self.fail(f"daemon exited {code} on SIGTERM")
        self.tracker_proc.stop()
        self.dht_proc.stop()
        per = [s for s in self.samples if s["phase"] == "churn"]
        summary = dict(
            self.stats, failures=self.failures, minutes=round((time.time() - self.t0) / 60, 1),
            torrents_max=len(self.torrents), add_seconds=round(self.add_time, 1),
            baseline=b, loaded=loaded, after_removal=after,
            peak={k: max((s[k] for s in per), default=None)
                  for k in ("threads", "fds", "rss_kib", "rss_anon_kib")})
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        log("summary:", json.dumps(summary))
        return not self.failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bittern", default=os.path.join(ROOT, "target/release/bittern"))
    ap.add_argument("--short", action="store_true", help="the test suite's ~40 s run")
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--restarts", type=int, default=12)
    ap.add_argument("--bulk", type=int, default=2000)
    ap.add_argument("--a", type=int, default=6)
    ap.add_argument("--b", type=int, default=6)
    ap.add_argument("--partners", type=int, default=24)
    ap.add_argument("--sample", type=float, default=60)
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--inject", choices=["lose-record", "flip-byte"],
                    help="plant a fault at the first kill (the run must fail)")
    args = ap.parse_args()
    # Tunables (short mode: seconds, not minutes).
    args.bulk_min, args.bulk_max = 16 << 10, 96 << 10
    args.swarm_min, args.swarm_max = 1 << 20, 12 << 20
    args.rate, args.linger, args.seed_life = 1_500_000, 60, 240
    args.leech_timeout, args.settle, args.op_every, args.tick = 900, 120, 2.0, 1.0
    args.claim_sample, args.claims_every, args.status_every = 40, 300, 300
    args.tracker_interval = "5m"
    if args.short:
        args.minutes, args.restarts, args.bulk, args.a, args.b = 0.5, 2, 30, 2, 2
        args.partners, args.sample = 6, 1
        args.swarm_min, args.swarm_max = 256 << 10, 1 << 20
        args.rate, args.linger, args.seed_life = 0, 3, 12
        args.leech_timeout, args.settle, args.op_every, args.tick = 20, 4, 0.3, 0.3
        args.claim_sample, args.claims_every, args.status_every = 10, 5, 10
        args.tracker_interval = "10s"
    # SIGTERM (or SIGHUP) ends the run through the cleanup below: every
    # child runs in its own session and would outlive the harness.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(2))
    soak = Soak(args)
    ok = False
    try:
        ok = soak.run()
    finally:
        for p in soak.partners:
            p["child"].stop(signal.SIGKILL, 5)
        for c in (soak.daemon, getattr(soak, "tracker_proc", None),
                  getattr(soak, "dht_proc", None)):
            if c and c.alive():
                c.stop(signal.SIGKILL, 5)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
