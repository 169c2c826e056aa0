"""libtorrent downloads a url-list torrent from its web seed alone:
lt_webseed.py TORRENT SAVE_DIR. Exits 0 once seeding."""
import sys
import time

import libtorrent as lt

s = lt.session({
    "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "alert_mask": lt.alert.category_t.error_notification,
})
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(sys.argv[1])
atp.save_path = sys.argv[2]
h = s.add_torrent(atp)
deadline = time.time() + 600
while not h.status().is_seeding:
    for a in s.pop_alerts():
        print(a.message(), file=sys.stderr)
    if time.time() > deadline:
        sys.exit("libtorrent: timed out")
    time.sleep(0.02)
s.remove_torrent(h)
del s
