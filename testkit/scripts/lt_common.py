"""Shared helpers for the libtorrent interop scripts (loopback only).

Run with Debian's /usr/bin/python3: python3-libtorrent imports only there.
"""

import os
import sys
import time

import libtorrent as lt


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def make_session(listen="127.0.0.1:0", outgoing="127.0.0.1", extra=None):
    """A libtorrent session on a loopback address (127.0.0.1 unless
    `listen` names another, e.g. "[::1]:0") with an ephemeral port and
    every discovery or port-mapping feature off, so nothing leaves
    loopback. `extra` overrides settings."""
    settings = {
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "listen_interfaces": listen,
        "outgoing_interfaces": outgoing,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        "announce_to_all_trackers": False,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.peer_notification,
        "user_agent": "bittern-interop-test",
    }
    # Protocol encryption, from BITTERN_LT_ENC: "rc4" forces MSE with an
    # RC4 stream both ways, "plaintext" forces MSE with a plaintext stream
    # after the handshake, "disabled" speaks plain BitTorrent only. Unset:
    # libtorrent's default (both accepted, plain dialled first).
    enc = os.environ.get("BITTERN_LT_ENC")
    if enc in ("rc4", "plaintext"):
        settings["out_enc_policy"] = 0  # pe_forced
        settings["in_enc_policy"] = 0
        settings["allowed_enc_level"] = 2 if enc == "rc4" else 1
        settings["prefer_rc4"] = enc == "rc4"
    elif enc == "disabled":
        settings["out_enc_policy"] = 2  # pe_disabled
        settings["in_enc_policy"] = 2
    elif enc:
        log("unknown BITTERN_LT_ENC", enc)
        sys.exit(3)
    if os.environ.get("BITTERN_LT_LSD") == "1":
        # Only ever set by bittern's LSD test, inside a private network
        # namespace holding nothing but lo.
        settings["enable_lsd"] = True
        settings["local_service_announce_interval"] = 1
    if os.environ.get("BITTERN_LT_NO_OUTGOING") == "1":
        # Accept connections only: whoever downloads must find us and dial.
        settings["enable_outgoing_tcp"] = False
    if os.environ.get("BITTERN_LT_V2_LOG") == "1":
        # Peer logs, for drain_alerts to report BEP 52 hash messages.
        settings["alert_mask"] |= lt.alert.category_t.peer_log_notification
        settings["alert_queue_size"] = 1000000
    settings.update(extra or {})
    ses = lt.session(settings)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                log("listen failed:", a.message())
                sys.exit(3)
        port = ses.listen_port()
        if port:
            return ses, port
        ses.wait_for_alert(100)
    log("no listen port after 10 s")
    sys.exit(3)


def add(ses, torrent, save_path, priorities=None):
    """Adds TORRENT (a .torrent path) saving into SAVE_PATH, with the file
    `priorities` given (a list), running and not auto-managed."""
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    if priorities is not None:
        atp.file_priorities = priorities
    return add_params(ses, atp)


def add_params(ses, atp):
    # Not auto-managed: the queue must never pause our only torrent.
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(atp)


def download(ses, h, peer_port, timeout, done, tick=None, note=None):
    """Runs until `done(status)` holds, (re)connecting to
    127.0.0.1:PEER_PORT whenever no peer is connected (the first attempt
    may come while the torrent is still checking) and logging progress
    each second (`note()` adds to the line). `tick()` runs first in each
    round. Exits 2 after TIMEOUT seconds."""
    peer = ("127.0.0.1", peer_port)
    deadline = time.monotonic() + timeout
    last_connect = 0.0
    last_log = 0.0
    extra = note or (lambda: "")
    while True:
        if tick:
            tick()
        s = h.status()
        if done(s):
            return s
        now = time.monotonic()
        if now > deadline:
            log("timed out:", describe(h), extra())
            drain_alerts(ses)
            sys.exit(2)
        if s.num_peers == 0 and now - last_connect > 1:
            h.connect_peer(peer)
            last_connect = now
        if now - last_log > 1:
            log(describe(h), extra())
            last_log = now
        drain_alerts(ses)
        time.sleep(0.05)


def close(ses, h, what):
    """Logs WHAT with the torrent's state and closes its files (removes it)
    before the test compares them; returns its last status."""
    drain_alerts(ses)
    s = h.status()
    log(what, describe(h))
    ses.remove_torrent(h)
    return s


def wait_checked(ses, h, ready, what):
    """Waits (30 s at most, else exits 2) until `ready(status)` holds after
    the data check; logs WHAT."""
    deadline = time.monotonic() + 30
    while not ready(h.status()):
        if time.monotonic() > deadline:
            log("not %s after the check:" % what, describe(h))
            sys.exit(2)
        drain_alerts(ses)
        time.sleep(0.05)
    log("%s:" % what, describe(h))


def serve(ses, h, report=False):
    """Serves until killed, printing "PEERS ..." (and with REPORT, "PEER
    ..." lines, see report_peers) as the connected set changes."""
    last = 0.0
    peers = None
    seen = set()
    while True:
        drain_alerts(ses)
        peers = print_peers(h, peers)
        if report:
            report_peers(h, seen)
        if time.monotonic() - last > 1:
            log(describe(h))
            last = time.monotonic()
        ses.wait_for_alert(200)


def drain_alerts(ses):
    """Logs the alerts; with BITTERN_LT_V2_LOG=1 prints each peer-log line
    about a BEP 52 hash message as "V2MSG <direction> <message>" on stdout
    (peer logs go to stdout only then: they are many)."""
    for a in ses.pop_alerts():
        if isinstance(a, lt.peer_log_alert):
            msg = a.message()
            if " HASH" in msg:
                print("V2MSG %s" % msg, flush=True)
            continue
        log("alert:", type(a).__name__, a.message())


def describe(h):
    s = h.status()
    return "state=%s progress=%.3f peers=%d down=%d up=%d seed=%s" % (
        s.state,
        s.progress,
        s.num_peers,
        s.total_payload_download,
        s.total_payload_upload,
        s.is_seeding,
    )


def print_peers(h, last):
    """Prints "PEERS ip:port ..." (sorted; with each peer's source flags
    in the log) when the connected set differs from `last`; returns it."""
    infos = h.get_peer_info()
    now = sorted("%s:%d" % (p.ip[0], p.ip[1]) for p in infos)
    if now != last:
        print("PEERS " + " ".join(now), flush=True)
        for p in infos:
            log("peer %s:%d source=%d client=%s" % (p.ip[0], p.ip[1], p.source, p.client))
    return now


def report_peers(h, seen):
    """Prints "PEER <ip:port> <flags>" on stdout for each peer connection
    past its handshake and not reported yet (flags: libtorrent's peer_info flags as an integer,
    bit 19 rc4_encrypted, bit 20 plaintext_encrypted)."""
    for p in h.get_peer_info():
        # Not while still connecting (0x80) or handshaking (0x40): the
        # encryption bits are set once the handshake is done.
        if int(p.flags) & 0xC0:
            continue
        key = (p.ip, int(p.flags) & ((1 << 19) | (1 << 20)))
        if key not in seen:
            seen.add(key)
            print("PEER %s:%d %d" % (p.ip[0], p.ip[1], int(p.flags)), flush=True)
