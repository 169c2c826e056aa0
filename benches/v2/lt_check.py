"""libtorrent's full check of TORRENT's data in DIR (listening on loopback only); exit 1 unless complete.

usage: /usr/bin/python3 lt_check.py TORRENT DIR
"""
import sys, time, libtorrent as lt
t, d = sys.argv[1], sys.argv[2]
s = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                "listen_interfaces": "127.0.0.1:0"})
h = s.add_torrent({"ti": lt.torrent_info(t), "save_path": d})
while True:
    st = h.status()
    if st.state in (lt.torrent_status.seeding, lt.torrent_status.finished) and not st.state == lt.torrent_status.checking_files:
        break
    if st.state == lt.torrent_status.downloading:
        print("NOT COMPLETE", st.progress); sys.exit(1)
    time.sleep(0.01)
print("ok", st.num_pieces)
