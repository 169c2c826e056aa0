"""libtorrent leechers for the scale benchmark (loopback only).

Run with Debian's /usr/bin/python3 (python3-libtorrent imports only there).

  leech.py PORT SEEDER_HOST:PORT SAVE_DIR LIMIT TORRENT...

One libtorrent session listening on 127.0.0.1:PORT adds every TORRENT
(not auto-managed, started), connects each to the seeder and downloads
at LIMIT bytes per second per torrent, so that every connection stays
open and busy for the whole measurement. Prints "CONNECTED <n>" every
second (torrents with a connected peer) and "ALL" once every torrent has
had one; dials one torrent at a time (see below), then reconnects torrents
without a peer; runs until SIGTERM.

Settings: DHT, LSD, UPnP, NAT-PMP, uTP and PEX off; listens and connects
on 127.0.0.1 only; encryption disabled both ways (plain BitTorrent);
everything else is libtorrent's default.
"""

import signal
import sys
import time

import libtorrent as lt


def main():
    port = int(sys.argv[1])
    host, seeder_port = sys.argv[2].rsplit(":", 1)
    seeder = (host, int(seeder_port))
    save = sys.argv[3]
    limit = int(sys.argv[4])
    torrents = sys.argv[5:]
    ses = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": 2,
        "in_enc_policy": 2,
        "alert_mask": lt.alert.category_t.error_notification,
        "user_agent": "bittern-scale-leecher",
    })
    handles = []
    for t in torrents:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(t)
        atp.save_path = save
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        h = ses.add_torrent(atp)
        h.set_download_limit(limit)
        handles.append(h)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # One at a time: transmission-daemon 3.00 refuses an incoming
    # connection while another handshake from the same address is under
    # way, and every leecher here is 127.0.0.1.
    for h in handles:
        if stop:
            break
        h.connect_peer(seeder)
        end = time.monotonic() + 3
        while h.status().num_peers == 0 and time.monotonic() < end:
            time.sleep(0.01)
    seen = [False] * len(handles)
    said_all = False
    last_connect = 0.0
    while not stop:
        now = time.monotonic()
        connected = 0
        for i, h in enumerate(handles):
            s = h.status()
            if s.num_peers > 0:
                connected += 1
                seen[i] = True
            elif now - last_connect > 2:
                h.connect_peer(seeder)
        if now - last_connect > 2:
            last_connect = now
        for a in ses.pop_alerts():
            print("alert:", a.message(), file=sys.stderr, flush=True)
        print("CONNECTED %d" % connected, flush=True)
        if not said_all and all(seen):
            said_all = True
            print("ALL", flush=True)
        time.sleep(1)
    done = sum(1 for h in handles if h.status().is_seeding)
    print("SEEDING %d" % done, flush=True)


if __name__ == "__main__":
    main()
