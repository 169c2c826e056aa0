#!/usr/bin/python3
"""Loopback-only libtorrent DHT swarm for bittern's CLI DHT and uTP tests.

Adapted from dht/tests/scripts/lt_dht.py (see shared/reference/dht.md for
why each setting is needed). Starts N libtorrent sessions, each listening
on 127.0.0.1 only, with an empty dht_bootstrap_nodes (libtorrent's default
is a router on the internet) and an ip_filter that blocks everything
outside 127/8, bootstrapped from one another with add_dht_node. With
--seed, node 1 seeds a trackerless torrent of --size random bytes; the
.torrent is written to --out. Prints one line

    {"event": "ready", "nodes": ["127.0.0.1:P0", ...], "info_hash": HEX|null,
     "seeder": "127.0.0.1:P1"|null, "torrent": PATH|null, "sha256": HEX|null}

(with --out the seeded data file, dht-seed.bin, is written there too)

then serves JSON commands, one per stdin line, one JSON line back each:

    {"cmd": "leech", "torrent": PATH or MAGNET, "node": I, "timeout": S, "peer": "127.0.0.1:P"?,
     "limit": BYTES_PER_S?}
        -> {"event": "leech", "ok": bool, "sha256": HEX|null, "path": PATH|null, "seconds": S,
            "peers": [{"addr": "127.0.0.1:P", "flags": INT, "source": INT}]}
       (each peer's flags and source: the union over every poll while leeching)
    {"cmd": "peers", "node": I}   (peers of the torrents node I has)
        -> {"event": "peers", "peers": [{"addr", "flags", "source"}, ...]}
    {"cmd": "table"}
        -> {"event": "table", "tables": [["127.0.0.1:P", ...], ...]}
    {"cmd": "quit"}

--ipv6 puts every session on [::1] instead (ip_filter: only ::1 allowed),
and every address printed is then "[::1]:P". --tcp-only turns uTP off in
every session; --utp-only turns TCP off
(enable_outgoing_tcp/enable_incoming_tcp false), so a transfer must use
uTP. It exits on "quit", when stdin closes or after --timeout.
"""
import argparse
import hashlib
import ipaddress
import json
import os
import select
import shutil
import sys
import tempfile
import time

import libtorrent as lt

LOOPBACK_DHT = {
    "enable_dht": True,
    "dht_bootstrap_nodes": "",          # no router: nothing leaves 127/8
    "dht_restrict_routing_ips": False,  # many nodes on one IP
    "dht_restrict_search_ips": False,
    "dht_block_ratelimit": 1000000,     # all sources are 127.0.0.1
    "dht_upload_rate_limit": 1000000,
    "dht_announce_interval": 15,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
    "send_socket_buffer_size": 4 << 20,
    "recv_socket_buffer_size": 4 << 20,
}

TMP_DIRS = []
ALERTS = lt.alert_category.error | lt.alert_category.dht | lt.alert_category.status


def ep_str(ep):
    host = ep[0]
    return f"[{host}]:{ep[1]}" if ":" in host else f"{host}:{ep[1]}"


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*a):
    print("[lt_dht_swarm]", *a, file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Node:
    def __init__(self, i, extra, v6=False):
        s = dict(LOOPBACK_DHT)
        s.update(extra)
        self.host = "::1" if v6 else "127.0.0.1"
        s["listen_interfaces"] = "[::1]:0" if v6 else "127.0.0.1:0"
        s["outgoing_interfaces"] = self.host
        s["alert_mask"] = int(ALERTS)
        self.ses = lt.session(s)
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1)
        f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1)
        if v6:
            f.add_rule("::1", "::1", 0)
        else:
            f.add_rule("127.0.0.0", "127.255.255.255", 0)
        self.ses.set_ip_filter(f)
        self.port = self.ses.listen_port()
        self.name = f"lt{i}"
        self.rt_size = None
        self.live = None

    @property
    def endpoint(self):
        return f"[::1]:{self.port}" if self.host == "::1" else f"127.0.0.1:{self.port}"

    def node_id(self):
        st = self.ses.save_state()
        ids = (st.get(b"dht state") or {}).get(b"node-id") or []
        return bytes(ids[0][:20]) if ids else None

    def pump(self):
        for al in self.ses.pop_alerts():
            if isinstance(al, lt.dht_stats_alert):
                self.rt_size = sum(b["num_nodes"] for b in al.routing_table)
            elif isinstance(al, lt.dht_live_nodes_alert):
                self.live = [ep_str(n["endpoint"]) for n in al.nodes]
            elif isinstance(al, (lt.listen_failed_alert, lt.udp_error_alert)):
                log(self.name, "ERROR", al.message())

    def peers(self):
        out = []
        for h in self.ses.get_torrents():
            for p in h.get_peer_info():
                out.append({"addr": ep_str(p.ip), "flags": int(p.flags), "source": int(p.source)})
        return out


def pump_until(nodes, cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in nodes:
            n.pump()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def add(node, torrent, save):
    if torrent.startswith("magnet:"):
        atp = lt.parse_magnet_uri(torrent)
        atp.trackers = []  # only the DHT (and nothing off loopback)
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent)
    atp.save_path = save
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    return node.ses.add_torrent(atp)


def leech(nodes, cmd):
    node = nodes[int(cmd.get("node", 0))]
    save = tempfile.mkdtemp(prefix="lt_leech_")
    TMP_DIRS.append(save)
    began = time.monotonic()
    h = add(node, cmd["torrent"], save)
    if cmd.get("peer"):
        host, port = cmd["peer"].rsplit(":", 1)
        host = host.strip("[]")
        if not ipaddress.ip_address(host).is_loopback:
            raise SystemExit(f"refusing non-loopback peer {cmd['peer']!r}")
        h.connect_peer((host, int(port)))
    if cmd.get("limit"):
        # keeps every connection up for seconds, so the polls below (every
        # 20 ms, far rarer when the machine is loaded) cannot miss it
        h.set_download_limit(int(cmd["limit"]))
    seen = {}

    def done():
        # A peer's flags and source are the union of every poll's: a poll
        # catching a connection that libtorrent is closing (it closes its
        # seeds the moment it finishes) reports its source as 0.
        for p in h.get_peer_info():
            addr = ep_str(p.ip)
            e = seen.setdefault(addr, {"addr": addr, "flags": 0, "source": 0})
            e["flags"] |= int(p.flags)
            e["source"] |= int(p.source)
        return h.status().is_seeding

    ok = pump_until(nodes, done, float(cmd.get("timeout", 60)))
    seconds = time.monotonic() - began
    digest = path = None
    if ok:
        ti = h.torrent_file()
        path = os.path.join(save, ti.files().file_path(0))
        digest = sha256_file(path)
    return {"event": "leech", "ok": ok, "sha256": digest, "path": path, "seconds": seconds,
            "peers": list(seen.values())}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--seed", action="store_true", help="node 1 seeds a trackerless torrent")
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--out", help="directory for the seeded .torrent")
    p.add_argument("--tcp-only", action="store_true")
    p.add_argument("--utp-only", action="store_true")
    p.add_argument("--ipv6", action="store_true", help="every node on [::1] instead of 127.0.0.1")
    p.add_argument("--timeout", type=float, default=180)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    extra = {}
    if a.tcp_only:
        extra.update(enable_outgoing_utp=False, enable_incoming_utp=False)
    if a.utp_only:
        extra.update(enable_outgoing_tcp=False, enable_incoming_tcp=False)
    nodes = [Node(i, extra, a.ipv6) for i in range(a.nodes)]
    for n in nodes:
        if not n.port:
            raise SystemExit(f"{n.name} did not listen")
        for m in nodes:
            if m is not n:
                n.ses.add_dht_node((m.host, m.port))

    def tables_full():
        for n in nodes:
            n.rt_size = None
            n.ses.post_dht_stats()
        pump_until(nodes, lambda: all(n.rt_size is not None for n in nodes), 2)
        return all((n.rt_size or 0) >= a.nodes - 1 for n in nodes)

    if not pump_until(nodes, tables_full, 20):
        raise SystemExit("libtorrent routing tables did not fill")
    tmp = tempfile.mkdtemp(prefix="lt_dht_")
    TMP_DIRS.append(tmp)
    ready = {"event": "ready", "nodes": [n.endpoint for n in nodes], "info_hash": None,
             "seeder": None, "torrent": None, "sha256": None}
    if a.seed:
        src = a.out or tmp
        path = os.path.join(src, "dht-seed.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(a.size))
        fs = lt.file_storage()
        lt.add_files(fs, path)
        ct = lt.create_torrent(fs, 64 * 1024, flags=lt.create_torrent.v1_only)
        lt.set_piece_hashes(ct, src)
        out = os.path.join(a.out or tmp, "dht-seed.torrent")
        with open(out, "wb") as f:
            f.write(lt.bencode(ct.generate()))
        add(nodes[1], out, src)
        ready.update(info_hash=str(lt.torrent_info(out).info_hashes().v1),
                     seeder=nodes[1].endpoint, torrent=out, sha256=sha256_file(path))
    emit(ready)

    while time.monotonic() < deadline:
        for n in nodes:
            n.pump()
        r, _, _ = select.select([sys.stdin], [], [], 0.05)
        if not r:
            continue
        line = sys.stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        c = cmd.get("cmd")
        if c == "quit":
            break
        if c == "leech":
            emit(leech(nodes, cmd))
        elif c == "peers":
            emit({"event": "peers", "peers": nodes[int(cmd.get("node", 0))].peers()})
        elif c == "table":
            for n in nodes:
                n.live = None
                nid = n.node_id()
                if nid:
                    n.ses.dht_live_nodes(lt.sha1_hash(nid))
            pump_until(nodes, lambda: all(n.live is not None for n in nodes), 5)
            emit({"event": "table", "tables": [n.live or [] for n in nodes]})
        else:
            emit({"event": "error", "what": f"unknown command {c!r}"})
    for n in nodes:
        del n.ses


if __name__ == "__main__":
    try:
        main()
    finally:
        for d in TMP_DIRS:
            shutil.rmtree(d, ignore_errors=True)
