"""libtorrent partner for bittern's MSE/PE interop tests (loopback only).

Run with Debian's /usr/bin/python3 (python3-libtorrent imports only there).

    lt_mse.py seed  LEVEL TORRENT SAVE_PATH        seed; print "PORT <n>"
    lt_mse.py leech LEVEL TORRENT SAVE_PATH PORT   download from 127.0.0.1:PORT

Encryption is forced both ways (out_enc_policy = in_enc_policy =
pe_forced), so a plain BitTorrent connection cannot happen, and LEVEL is
the only stream method allowed: "rc4" (allowed_enc_level = pe_rc4) or
"plaintext" (pe_plaintext: obfuscated handshake, then a clear stream).
Every peer seen is reported on stdout as
"PEER <ip:port> flags=<n> enc=<rc4|plaintext|none>" (peer_info flag bit 19
is rc4_encrypted, bit 20 plaintext_encrypted). The leecher prints "DONE"
once the torrent is complete and exits. Diagnostics go to stderr.
"""

import sys
import time

import lt_common
from lt_common import add, log

PE_FORCED = 0
LEVELS = {"plaintext": 1, "rc4": 2}
RC4_ENCRYPTED = 1 << 19
PLAINTEXT_ENCRYPTED = 1 << 20


def say(*args):
    print(*args, flush=True)


def make_session(level):
    """A loopback session (lt_common's settings) that forces encryption
    both ways with LEVEL the only stream method."""
    return lt_common.make_session(
        extra={
            "out_enc_policy": PE_FORCED,
            "in_enc_policy": PE_FORCED,
            "allowed_enc_level": LEVELS[level],
            "prefer_rc4": level == "rc4",
            "user_agent": "bittern-mse-test",
        }
    )


def report_peers(h, seen):
    for p in h.get_peer_info():
        key = "%s:%d" % (p.ip[0], p.ip[1])
        flags = int(p.flags)
        if flags & RC4_ENCRYPTED:
            enc = "rc4"
        elif flags & PLAINTEXT_ENCRYPTED:
            enc = "plaintext"
        else:
            enc = "none"
        line = "PEER %s flags=%d enc=%s" % (key, flags, enc)
        if seen.get(key) != line:
            seen[key] = line
            say(line)


def drain(ses):
    for a in ses.pop_alerts():
        log("alert:", type(a).__name__, a.message())


def seed(level, torrent, save_path):
    ses, port = make_session(level)
    h = add(ses, torrent, save_path)
    deadline = time.monotonic() + 30
    while not h.status().is_seeding:
        if time.monotonic() > deadline:
            log("not seeding after the check")
            sys.exit(2)
        drain(ses)
        time.sleep(0.05)
    say("PORT %d" % port)
    seen = {}
    while True:
        drain(ses)
        report_peers(h, seen)
        ses.wait_for_alert(50)


def leech(level, torrent, save_path, port):
    ses, _ = make_session(level)
    h = add(ses, torrent, save_path)
    h.connect_peer(("127.0.0.1", port))
    seen = {}
    deadline = time.monotonic() + 60
    last_connect = time.monotonic()
    while not h.status().is_seeding:
        if time.monotonic() > deadline:
            log("not complete after 60 s:", h.status().progress)
            sys.exit(2)
        drain(ses)
        report_peers(h, seen)
        if not h.get_peer_info() and time.monotonic() - last_connect > 1:
            # a failed handshake (see the test) is retried with a new one
            h.connect_peer(("127.0.0.1", port))
            last_connect = time.monotonic()
        ses.wait_for_alert(50)
    report_peers(h, seen)
    say("DONE")


def main():
    mode = sys.argv[1]
    if mode == "seed":
        seed(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "leech":
        leech(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        log("unknown mode", mode)
        sys.exit(2)


if __name__ == "__main__":
    main()
