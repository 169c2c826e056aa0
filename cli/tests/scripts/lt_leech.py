"""A libtorrent leecher on loopback: downloads one torrent from one peer.

usage: /usr/bin/python3 lt_leech.py FILE.torrent SAVE_DIR PEER_PORT TIMEOUT_SECS

DHT, LSD, UPnP and NAT-PMP are off and it listens on 127.0.0.1 only; it
connects to 127.0.0.1:PEER_PORT. Prints "done <bytes>" and exits 0 when the
torrent is complete (libtorrent has checked every piece), exits 1 on timeout.
"""
import sys
import time

import libtorrent as lt

torrent, save_dir, peer_port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

settings = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    # bittern speaks plain BitTorrent (no MSE/PE): do not try encryption first
    "out_enc_policy": 2,
    "in_enc_policy": 2,
    "alert_mask": lt.alert.category_t.error_notification,
}
ses = lt.session(settings)
handle = ses.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save_dir})
deadline = time.time() + timeout
last_connect = 0.0
while time.time() < deadline:
    st = handle.status()
    if st.is_seeding or (st.state == lt.torrent_status.seeding):
        print("done", st.total_wanted_done, flush=True)
        sys.exit(0)
    if st.state in (lt.torrent_status.downloading, lt.torrent_status.finished) and \
            st.num_peers == 0 and time.time() - last_connect > 2:
        handle.connect_peer(("127.0.0.1", peer_port))
        last_connect = time.time()
    for a in ses.pop_alerts():
        print("alert", a.message(), file=sys.stderr, flush=True)
    time.sleep(0.1)
st = handle.status()
print("timeout", st.state, st.progress, st.num_peers, file=sys.stderr, flush=True)
sys.exit(1)
