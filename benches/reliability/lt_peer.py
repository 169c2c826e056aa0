#!/usr/bin/python3
"""libtorrent partner of the daemon soak (loopback only).

  lt_peer.py dht                      a DHT node only: prints "PORT <p>", runs until killed
  lt_peer.py seed  TORRENT SAVE [...] seeds: prints "READY", runs until killed
  lt_peer.py leech TORRENT SAVE [...] downloads: prints "DONE", seeds --linger
                                      seconds more, exits 0
Options: --dht H:P (join the DHT through this node; else DHT off),
--utp-only (no TCP), --encrypt (RC4 forced both ways), --peer H:P
(connect to it whenever no peer is connected), --rate BYTES/s (download
limit). The session listens on 127.0.0.1 only, an ip_filter blocks every
address outside 127/8, LSD/UPnP/NAT-PMP off, dht_bootstrap_nodes empty
(libtorrent's default router is on the internet); PEX is libtorrent's
default plugin.
"""
import argparse
import sys
import time

import libtorrent as lt


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def session(args):
    s = {
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": bool(args.dht) or args.role == "dht",
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_block_ratelimit": 1000000,
        "dht_upload_rate_limit": 1000000,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": int(lt.alert_category.error | lt.alert_category.status),
        "user_agent": "bittern-soak-libtorrent",
    }
    if args.utp_only:
        s.update({"enable_outgoing_tcp": False, "enable_incoming_tcp": False,
                  "enable_outgoing_utp": True, "enable_incoming_utp": True})
    if args.encrypt:
        s.update({"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2,
                  "prefer_rc4": True})
    if args.rate:
        s["download_rate_limit"] = args.rate
    ses = lt.session(s)
    f = lt.ip_filter()
    f.add_rule("0.0.0.0", "255.255.255.255", 1)
    f.add_rule("127.0.0.0", "127.255.255.255", 0)
    ses.set_ip_filter(f)
    for node in args.dht or []:
        h, p = node.rsplit(":", 1)
        ses.add_dht_node((h, int(p)))
    return ses


def drain(ses):
    for a in ses.pop_alerts():
        if a.category() & lt.alert_category.error:
            log("alert:", type(a).__name__, a.message())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["dht", "seed", "leech"])
    ap.add_argument("torrent", nargs="?")
    ap.add_argument("save", nargs="?")
    ap.add_argument("--dht", action="append")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--utp-only", action="store_true")
    ap.add_argument("--encrypt", action="store_true")
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--linger", type=float, default=0)
    args = ap.parse_args()
    ses = session(args)
    if args.role == "dht":
        print("PORT", ses.listen_port(), flush=True)
        while True:
            drain(ses)
            ses.wait_for_alert(1000)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.save
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(atp)
    peers = [(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in args.peer]
    done_at, last_connect, last_log = None, 0.0, 0.0
    while True:
        s = h.status()
        now = time.monotonic()
        if s.is_seeding and done_at is None:
            done_at = now
            print("READY" if args.role == "seed" else "DONE", flush=True)
        if args.role == "leech" and done_at is not None and now - done_at >= args.linger:
            ses.pause()
            return
        if peers and s.num_peers == 0 and now - last_connect > 2 \
                and s.state != lt.torrent_status.checking_files:
            for p in peers:
                h.connect_peer(p)
            last_connect = now
        if now - last_log > 30:
            log("state=%s progress=%.4f peers=%d down=%d up=%d" % (
                s.state, s.progress, s.num_peers, s.total_payload_download,
                s.total_payload_upload))
            last_log = now
        drain(ses)
        ses.wait_for_alert(200)


if __name__ == "__main__":
    main()
