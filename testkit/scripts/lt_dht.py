#!/usr/bin/python3
"""Loopback-only libtorrent DHT swarm for bittern-dht's interop test.

Adapted from shared/reference/dht_lt.py (see dht.md there for why each
setting is needed). Starts N libtorrent sessions, each listening on
127.0.0.1 only, with an empty dht_bootstrap_nodes (so libtorrent contacts no
router on the internet), bootstrapped from one another with add_dht_node.
With --seed, node 1 seeds a small trackerless torrent (random data in a temp
dir), so libtorrent announces it on the DHT itself (the Python bindings of
2.0.8 cannot call dht_announce: its flags type is not exported), and the
script waits until another node stored the announce. Then prints one line

    {"event": "ready", "nodes": ["127.0.0.1:P0", ...],
     "info_hash": HEX or null, "seeder": "127.0.0.1:P1" or null}

and serves JSON commands, one per stdin line, answering one JSON line each:

    {"cmd": "get_peers", "info_hash": HEX, "node": I}
        -> {"event": "peers", "peers": ["127.0.0.1:P", ...]}   (libtorrent lookup)
    {"cmd": "add_node", "addr": "127.0.0.1:P"}  (every node pings it)
        -> {"event": "ok"}
    {"cmd": "table"}
        -> {"event": "table", "tables": [["127.0.0.1:P", ...], ...]}
    {"cmd": "announces"}
        -> {"event": "announces", "received": [[ip, port, HEX], ...]}
    {"cmd": "quit"}

It exits on "quit", when stdin closes (the test died) or after --timeout.
Every address given to it must be on 127.0.0.0/8.
"""
import argparse
import ipaddress
import json
import os
import select
import shutil
import sys
import tempfile
import time

import libtorrent as lt

# the five settings a loopback DHT needs (dht.md), plus announce/ratelimit ones
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
}

TMP_DIRS = []

ALERTS = lt.alert_category.error | lt.alert_category.dht | lt.alert_category.dht_operation


def loopback_ep(text):
    host, port = text.strip().rsplit(":", 1)
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing non-loopback address {text!r}")
    return host, int(port)


def ep_str(ep):
    return f"{ep[0]}:{ep[1]}"


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*a):
    print("[lt_dht]", *a, file=sys.stderr, flush=True)


class Node:
    def __init__(self, i):
        s = dict(LOOPBACK_DHT)
        s["listen_interfaces"] = "127.0.0.1:0"
        s["outgoing_interfaces"] = "127.0.0.1"
        s["alert_mask"] = int(ALERTS)
        self.ses = lt.session(s)
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1)
        f.add_rule("127.0.0.0", "127.255.255.255", 0)
        self.ses.set_ip_filter(f)
        self.port = self.ses.listen_port()
        self.name = f"lt{i}"
        self.rt_size = None
        self.live = None
        self.peers = None
        self.announces = []

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

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
            elif isinstance(al, lt.dht_get_peers_reply_alert):
                self.peers = (self.peers or []) + [ep_str(p) for p in al.peers()]
                self.peers_done = True
            elif isinstance(al, lt.dht_announce_alert):
                self.announces.append([str(al.ip), al.port, str(al.info_hash)])
            elif isinstance(al, (lt.listen_failed_alert, lt.udp_error_alert)):
                log(self.name, "ERROR", al.message())


def pump_until(nodes, cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in nodes:
            n.pump()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--seed", action="store_true", help="node 1 seeds a trackerless torrent")
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    nodes = [Node(i) for i in range(a.nodes)]
    for n in nodes:
        if not n.port:
            raise SystemExit(f"{n.name} did not listen")
        for m in nodes:
            if m is not n:
                n.ses.add_dht_node(("127.0.0.1", m.port))

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
    info_hash = seeder = None
    if a.seed:
        path = os.path.join(tmp, "seed.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(64 * 1024))
        fs = lt.file_storage()
        lt.add_files(fs, path)
        ct = lt.create_torrent(fs, 16 * 1024, flags=lt.create_torrent.v1_only)
        lt.set_piece_hashes(ct, tmp)
        ti = lt.torrent_info(ct.generate())
        atp = lt.add_torrent_params()
        atp.ti = ti
        atp.save_path = tmp
        atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        nodes[1].ses.add_torrent(atp)
        info_hash = str(ti.info_hashes().v1)
        seeder = nodes[1].endpoint
        others = [n for n in nodes if n is not nodes[1]]
        if not pump_until(nodes, lambda: any(x[2] == info_hash for n in others for x in n.announces), 30):
            raise SystemExit("libtorrent's announce was not stored")
    emit({"event": "ready", "nodes": [n.endpoint for n in nodes], "info_hash": info_hash,
          "seeder": seeder})

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
        if c == "get_peers":
            n = nodes[int(cmd.get("node", 0))]
            n.peers = None
            n.ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(cmd["info_hash"])))
            pump_until(nodes, lambda: n.peers is not None, 30)
            emit({"event": "peers", "peers": n.peers or []})
        elif c == "add_node":
            host, port = loopback_ep(cmd["addr"])
            for n in nodes:
                n.ses.add_dht_node((host, port))
            emit({"event": "ok"})
        elif c == "table":
            for n in nodes:
                n.live = None
                nid = n.node_id()
                if nid:
                    n.ses.dht_live_nodes(lt.sha1_hash(nid))
            pump_until(nodes, lambda: all(n.live is not None for n in nodes), 5)
            emit({"event": "table", "tables": [n.live or [] for n in nodes]})
        elif c == "announces":
            emit({"event": "announces", "received": [x for n in nodes for x in n.announces]})
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
