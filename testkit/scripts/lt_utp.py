"""libtorrent 2.0.x as a uTP-only partner for bittern-utp's interop tests.

Run with Debian's /usr/bin/python3 (python3-libtorrent). Both modes make a
torrent of DATA (256 KiB pieces) and print one line

    READY <port> <info-hash hex> <piece length> <piece hashes hex...>

then:

  seed  DATA TIMEOUT        seed DATA from its directory, uTP only, on
                            127.0.0.1:<port>, until stdin closes; then print
                            "PEERS utp=<n> tcp=<n> uploaded=<bytes>".
  make  DATA TORRENT        only write the torrent file (no session); print
                            "READY 0 ..." as above.
  leech DATA OUT TIMEOUT    read "PEER host:port" from stdin, download into
                            directory OUT from that peer over uTP only, print
                            "DONE utp=<0|1> progress=<0..1> downloaded=<bytes>".

TCP is disabled both ways, so a broken uTP cannot be hidden by a fallback;
"utp" counts peers whose peer_info flags have bit 17 (utp_socket).
"""
import os
import sys
import threading
import time

import libtorrent as lt

UTP_SOCKET = 1 << 17


def session():
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_tcp": False, "enable_incoming_tcp": False,
        "enable_outgoing_utp": True, "enable_incoming_utp": True,
        "recv_socket_buffer_size": 4 << 20, "send_socket_buffer_size": 4 << 20,
        "allow_multiple_connections_per_ip": True,
        # plaintext BitTorrent: the test peer does not speak MSE
        "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled),
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.peer_notification
                          | lt.alert.category_t.connect_notification),
    }, 0)


def make_torrent(data):
    fs = lt.file_storage()
    lt.add_files(fs, data)
    ct = lt.create_torrent(fs, 256 * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(data)))
    return lt.torrent_info(lt.bencode(ct.generate()))


def ready(s, ti):
    hashes = [bytes(ti.hash_for_piece(i)).hex() for i in range(ti.num_pieces())]
    print("READY", s.listen_port(), str(ti.info_hash()), ti.piece_length(), *hashes, flush=True)


def flags(h):
    out = [int(p.flags) for p in h.get_peer_info()]
    if out and os.environ.get("LT_UTP_DEBUG"):
        print("flags", [hex(f) for f in out], file=sys.stderr)
    return out


def seed(data, timeout):
    s = session()
    ti = make_torrent(data)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = os.path.dirname(os.path.abspath(data))
    atp.flags = (lt.torrent_flags.seed_mode | lt.torrent_flags.disable_dht
                 | lt.torrent_flags.disable_pex | lt.torrent_flags.disable_lsd)
    h = s.add_torrent(atp)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = h.status()
        if st.state == lt.torrent_status.seeding and not st.paused:
            break
        time.sleep(0.01)  # a connection before the torrent started is refused
    ready(s, ti)
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    utp = tcp = 0
    t0 = time.monotonic()
    while True:
        done = closed.is_set() or time.monotonic() - t0 > timeout
        for f in flags(h):  # one last look after stdin closed: the peer is still there
            utp = max(utp, 1 if f & UTP_SOCKET else 0)
            tcp = max(tcp, 0 if f & UTP_SOCKET else 1)
        for a in s.pop_alerts():
            print("ALERT", a.message(), file=sys.stderr, flush=True)
        if done:
            break
        time.sleep(0.05)
    for a in s.pop_alerts():
        print("ALERT", a.message(), file=sys.stderr)
    print("PEERS utp=%d tcp=%d uploaded=%d" % (utp, tcp, h.status().total_payload_upload),
          flush=True)


def leech(data, out, timeout):
    s = session()
    ti = make_torrent(data)
    ready(s, ti)
    line = sys.stdin.readline().split()
    host, port = line[1].rsplit(":", 1)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = out
    atp.flags = (lt.torrent_flags.disable_dht | lt.torrent_flags.disable_pex
                 | lt.torrent_flags.disable_lsd)
    h = s.add_torrent(atp)
    utp = 0
    t0 = time.monotonic()
    last_connect = 0
    while time.monotonic() - t0 < timeout:
        st = h.status()
        if not h.get_peer_info() and time.monotonic() - last_connect > 2:
            h.connect_peer((host, int(port)))
            last_connect = time.monotonic()
        for f in flags(h):
            utp = max(utp, 1 if f & UTP_SOCKET else 0)
        if st.is_seeding:
            break
        time.sleep(0.05)
    h.flush_cache()
    time.sleep(0.2)
    st = h.status()
    for a in s.pop_alerts():
        print("ALERT", a.message(), file=sys.stderr)
    print("DONE utp=%d progress=%.3f downloaded=%d" % (utp, st.progress, st.total_payload_download),
          flush=True)


def make(data, torrent):
    fs = lt.file_storage()
    lt.add_files(fs, data)
    ct = lt.create_torrent(fs, 256 * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(data)))
    raw = lt.bencode(ct.generate())
    with open(torrent, "wb") as f:
        f.write(raw)
    ti = lt.torrent_info(raw)
    hashes = [bytes(ti.hash_for_piece(i)).hex() for i in range(ti.num_pieces())]
    print("READY", 0, str(ti.info_hash()), ti.piece_length(), *hashes, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "seed":
        seed(sys.argv[2], float(sys.argv[3]))
    else:
        leech(sys.argv[2], sys.argv[3], float(sys.argv[4]))
