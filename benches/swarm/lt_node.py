"""libtorrent roles for the swarm benchmark (loopback only).

Run with Debian's /usr/bin/python3 (python3-libtorrent imports only there).

  lt_node.py seed    TORRENT SAVE_DIR PORT [--peer H:P]... [--reqq N] [--rc4] [--utp]
      Checks the data, prints "READY" once seeding, connects to every --peer
      (again whenever it has no peers) and serves until SIGTERM.
  lt_node.py leech   TORRENT SAVE_DIR PORT [--peer H:P]...
      Downloads, prints "DONE <bytes>" once every piece has passed its hash
      check, closes the session and exits 0.
  lt_node.py magnet  MAGNET_URI SAVE_DIR PORT
      Downloads from a magnet link alone (peers from its x.pe), prints
      "ADDED <unix time>" right before add_torrent, "METADATA <unix time>" when the metadata_received_alert is popped and
      "DONE <bytes>" once every piece has passed its hash check, then exits.
  lt_node.py create  PATH OUT.torrent PIECE_SIZE TRACKER_URL
      libtorrent's creator (v1 only), prints the v1 info hash.
  lt_node.py check   TORRENT SAVE_DIR
      Full recheck of the data; exit 0 only if every piece is good.
  lt_node.py hash    TORRENT
      Prints the v1 info hash libtorrent computes for a .torrent file.

Settings: DHT, LSD, UPnP, NAT-PMP and uTP off; listens on 127.0.0.1 only;
allow_multiple_connections_per_ip on; encryption disabled in both
directions (out_enc_policy = in_enc_policy = pe_disabled = 2), so every
client pair compares plain BitTorrent. Everything else is libtorrent's
default, except --reqq, which sets max_allowed_in_request_queue, and
--rc4, which forces protocol encryption with RC4 both ways
(out_enc_policy = in_enc_policy = pe_forced = 0, allowed_enc_level =
pe_rc4 = 2, prefer_rc4), and --utp, which makes uTP the only transport
(enable_incoming_utp = enable_outgoing_utp = True, enable_incoming_tcp =
enable_outgoing_tcp = False) with 4 MiB socket buffers
(recv_socket_buffer_size = send_socket_buffer_size = 4194304; the
default 208 KiB drops datagrams at loopback speed).
"""

import os
import signal
import sys
import time

import libtorrent as lt


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def make_session(port, reqq=None, rc4=False, utp=False):
    settings = {
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
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification,
        "user_agent": "bittern-bench-libtorrent",
    }
    if reqq is not None:
        settings["max_allowed_in_request_queue"] = reqq
    if rc4:
        settings.update({"out_enc_policy": 0, "in_enc_policy": 0,
                         "allowed_enc_level": 2, "prefer_rc4": True})
    if utp:
        settings.update({"enable_incoming_utp": True, "enable_outgoing_utp": True,
                         "enable_incoming_tcp": False, "enable_outgoing_tcp": False,
                         "recv_socket_buffer_size": 4 << 20,
                         "send_socket_buffer_size": 4 << 20})
    return lt.session(settings)


def add(ses, torrent, save_path):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(atp)


def drain(ses):
    for a in ses.pop_alerts():
        log("alert:", type(a).__name__, a.message())


def describe(h):
    s = h.status()
    return "state=%s progress=%.4f peers=%d down=%d up=%d" % (
        s.state, s.progress, s.num_peers, s.total_payload_download,
        s.total_payload_upload)


def transports(h):
    """The transport of each connected peer: libtorrent's peer flag
    utp_socket (bit 17)."""
    return "transports=[%s]" % ",".join(
        "utp" if p.flags & (1 << 17) else "tcp" for p in h.get_peer_info())


def parse_peers(args):
    peers, reqq, rc4, utp, i = [], None, False, False, 0
    while i < len(args):
        if args[i] == "--rc4":
            rc4 = True
            i += 1
            continue
        if args[i] == "--utp":
            utp = True
            i += 1
            continue
        if args[i] == "--peer":
            host, port = args[i + 1].rsplit(":", 1)
            peers.append((host, int(port)))
            i += 2
        elif args[i] == "--reqq":
            reqq = int(args[i + 1])
            i += 2
        else:
            raise SystemExit("unknown argument %r" % args[i])
    return peers, reqq, (rc4, utp)


def seed(torrent, save, port, rest):
    peers, reqq, (rc4, utp) = parse_peers(rest)
    ses = make_session(port, reqq, rc4, utp)
    h = add(ses, torrent, save)
    deadline = time.monotonic() + 300
    while not h.status().is_seeding:
        if time.monotonic() > deadline:
            log("not seeding after the check:", describe(h))
            sys.exit(3)
        drain(ses)
        ses.wait_for_alert(50)
    print("READY", flush=True)
    last_connect = last_log = 0.0
    while True:
        now = time.monotonic()
        if peers and h.status().num_peers == 0 and now - last_connect > 0.5:
            for p in peers:
                h.connect_peer(p)
            last_connect = now
        if now - last_log > 2:
            log(describe(h))
            last_log = now
        drain(ses)
        ses.wait_for_alert(100)


def finish(ses, h):
    """Logs the completed torrent, removes it (closing its files) and
    returns its payload bytes downloaded."""
    done = h.status().total_payload_download
    log("complete:", describe(h))
    ses.remove_torrent(h)
    return done


def leech(torrent, save, port, rest):
    peers, reqq, (rc4, utp) = parse_peers(rest)
    ses = make_session(port, reqq, rc4, utp)
    h = add(ses, torrent, save)
    last_connect = last_log = 0.0
    while True:
        s = h.status()
        if s.is_seeding:
            break
        now = time.monotonic()
        if peers and s.num_peers == 0 and now - last_connect > 0.5 and \
                s.state != lt.torrent_status.checking_files:
            for p in peers:
                h.connect_peer(p)
            last_connect = now
        if now - last_log > 2:
            log(describe(h), transports(h))
            last_log = now
        drain(ses)
        ses.wait_for_alert(50)
    log("peers at the end:", transports(h))
    done = finish(ses, h)
    del h
    del ses
    print("DONE %d" % done, flush=True)


def magnet(uri, save, port):
    ses = make_session(port)
    # Every alert category the metadata alert may come under.
    ses.apply_settings({"alert_mask": lt.alert.category_t.all_categories})
    atp = lt.parse_magnet_uri(uri)
    atp.save_path = save
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    t_add = time.time()
    h = ses.add_torrent(atp)
    print("ADDED %.6f" % t_add, flush=True)
    have_meta = False
    last_log = 0.0
    while True:
        if have_meta and h.status().is_seeding:
            break
        for a in ses.pop_alerts():
            if isinstance(a, lt.metadata_received_alert) and not have_meta:
                have_meta = True
                print("METADATA %.6f" % time.time(), flush=True)
            elif isinstance(a, (lt.torrent_error_alert, lt.metadata_failed_alert)):
                log("alert:", type(a).__name__, a.message())
        now = time.monotonic()
        if now - last_log > 2:
            log(describe(h))
            last_log = now
        ses.wait_for_alert(50)
    done = finish(ses, h)
    del h
    del ses
    print("DONE %d" % done, flush=True)


def create(path, out, piece_size, tracker):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    t = lt.create_torrent(fs, int(piece_size), flags=lt.create_torrent.v1_only)
    t.add_tracker(tracker)
    t.set_creator("libtorrent")
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
    data = lt.bencode(t.generate())
    with open(out, "wb") as f:
        f.write(data)
    print_hash(out)


def print_hash(torrent):
    ti = lt.torrent_info(torrent)
    ih = ti.info_hashes()
    print("info_hash", str(ih.v1), flush=True)
    if ih.has_v2():
        print("info_hash_v2", str(ih.v2), flush=True)


def check(torrent, save):
    ses = make_session(0)
    h = add(ses, torrent, save)
    deadline = time.monotonic() + 600
    checked = False
    while not checked:
        if time.monotonic() > deadline:
            log("check timed out:", describe(h))
            sys.exit(2)
        ses.wait_for_alert(20)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, lt.torrent_error_alert):
                log("error:", a.message())
    s = h.status()
    total = h.torrent_file().num_pieces()
    print("pieces %d of %d" % (s.num_pieces, total), flush=True)
    sys.exit(0 if s.num_pieces == total else 3)


def main():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "seed":
        seed(args[0], args[1], int(args[2]), args[3:])
    elif mode == "leech":
        leech(args[0], args[1], int(args[2]), args[3:])
    elif mode == "magnet":
        magnet(args[0], args[1], int(args[2]))
    elif mode == "create":
        create(*args)
    elif mode == "check":
        check(*args)
    elif mode == "hash":
        print_hash(args[0])
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
