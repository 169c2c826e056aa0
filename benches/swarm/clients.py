"""How each client is started as a seeder or a leecher, and how we see that
it is ready (seeder) or complete (leecher). Loopback (127.0.0.1) only.
"""

import json
import os
import sys

from procs import Proc

HERE = os.path.dirname(os.path.abspath(__file__))
LT_NODE = os.path.join(HERE, "lt_node.py")
PY = "/usr/bin/python3"

# The settings given to the other clients, echoed into RESULTS.md.
SETTINGS_NOTES = [
    "bittern: `bittern -vv seed T -d DATA -p PORT --bind 127.0.0.1 [--peer 127.0.0.1:P]`, "
    "`bittern -vv download T -d DIR -p PORT --bind 127.0.0.1 --peer 127.0.0.1:SEEDER "
    "--exit-on-complete` (defaults otherwise; debug logs go to the run dir)",
    "libtorrent (python3-libtorrent, `benches/swarm/lt_node.py`): DHT/LSD/UPnP/NAT-PMP/uTP off, "
    "listen and outgoing interface 127.0.0.1, allow_multiple_connections_per_ip, "
    "out_enc_policy = in_enc_policy = 2 (pe_disabled); all else default "
    "(max_allowed_in_request_queue 2000). `libtorrent-reqq` is the same with "
    "max_allowed_in_request_queue = 20000. Seeders do a full check before serving (no seed_mode). "
    "The leecher exits after remove_torrent and closing the session.",
    "aria2c: `--enable-dht=false --enable-dht6=false --bt-enable-lpd=false "
    "--enable-peer-exchange=false --bt-require-crypto=false --bt-min-crypto-level=plain "
    "--seed-time=0 --file-allocation=falloc --disable-ipv6=true`; it finds the seeder "
    "through the tracker only",
    "bittern-rc4 / libtorrent-rc4: the same with protocol encryption forced, RC4 both "
    "ways: bittern `--encryption require`; libtorrent out_enc_policy = in_enc_policy = 0 "
    "(pe_forced), allowed_enc_level = 2 (pe_rc4), prefer_rc4",
    "bittern-utp / libtorrent-utp: uTP as the only transport: bittern `--no-tcp` (no TCP "
    "listener or dial; its UDP socket asks for 4 MiB buffers); libtorrent "
    "enable_incoming_utp = enable_outgoing_utp = True, enable_incoming_tcp = "
    "enable_outgoing_tcp = False, recv_socket_buffer_size = send_socket_buffer_size = "
    "4194304 (the leecher logs each peer's transport from its utp_socket flag)",
    "bittern-utp-nogro: bittern-utp with BITTERN_UTP_NO_GRO=1 (datagrams received one by one "
    "in recvmmsg batches, no UDP GRO), for a same-run comparison",
    "bittern-utp-nogso: bittern-utp with BITTERN_UTP_NO_GSO=1 (uTP datagrams sent one "
    "by one in sendmmsg batches, no UDP GSO), for a same-run comparison",
    "transmission-cli: fresh config dir per run with dht/lpd/pex/utp/port-forwarding off, "
    "bind-address-ipv4 127.0.0.1, encryption 0 (prefer plain), rename-partial-files false, "
    "`-et -M -D -U -f <finish script>`; the seeder connects to it (`--peer` / connect_peer), "
    "completion = the finish script ran, then it is stopped",
]


class Client:
    """One client kind. `seed` and `leech` return a started Proc."""

    name = "?"

    def ready(self, proc):
        raise NotImplementedError

    def complete(self, proc):
        return proc.exit_code == 0

    def failed(self, proc):
        return proc.exit_code not in (None, 0)


class Bittern(Client):
    def __init__(self, binary, rc4=False, utp=False, gso=True, gro=True, name=None):
        self.bin = binary
        self.name = name or ("bittern-rc4" if rc4 else "bittern-utp" if utp else "bittern")
        # `bittern-utp-nogso`: uTP sent datagram by datagram (sendmmsg
        # without UDP GSO), for a same-run comparison; `bittern-utp-nogro`:
        # received datagram by datagram (recvmmsg without UDP GRO).
        self.env = None
        if not gso:
            self.env = {"BITTERN_UTP_NO_GSO": "1"}
            self.name += "-nogso"
        if not gro:
            self.env = {"BITTERN_UTP_NO_GRO": "1"}
            self.name += "-nogro"
        # `require`: RC4-only MSE both ways (the default `prefer` picks
        # plaintext after the handshake when both ends offer it).
        self.extra = ["--encryption", "require"] if rc4 else []
        # uTP only: no TCP listener, no TCP dial.
        if utp:
            self.extra += ["--no-tcp"]

    def seed(self, torrent, data_dir, port, peers, logdir, tag):
        argv = [self.bin, "-vv", "--status-interval", "1s", "seed", torrent, "-d", data_dir,
                "-p", port, "--bind", "127.0.0.1"] + self.extra
        for p in peers:
            argv += ["--peer", "127.0.0.1:%d" % p]
        return Proc(tag, argv, logdir, env=self.env)

    def ready(self, proc):
        return "verified, seeding" in proc.output()

    def leech(self, torrent, save_dir, port, seeder_port, logdir, tag, scratch):
        argv = [self.bin, "-vv", "download", torrent, "-d", save_dir, "-p", port,
                "--bind", "127.0.0.1", "--peer", "127.0.0.1:%d" % seeder_port,
                "--exit-on-complete"] + self.extra
        return Proc(tag, argv, logdir, env=self.env)


class Libtorrent(Client):
    def __init__(self, reqq=None, rc4=False, utp=False):
        self.reqq = reqq
        self.rc4 = rc4
        self.utp = utp
        self.name = "libtorrent" if reqq is None else "libtorrent-reqq"
        if rc4:
            self.name += "-rc4"
        if utp:
            self.name += "-utp"

    def _extra(self):
        extra = [] if self.reqq is None else ["--reqq", self.reqq]
        return extra + (["--rc4"] if self.rc4 else []) + (["--utp"] if self.utp else [])

    def seed(self, torrent, data_dir, port, peers, logdir, tag):
        argv = [PY, LT_NODE, "seed", torrent, data_dir, port] + self._extra()
        for p in peers:
            argv += ["--peer", "127.0.0.1:%d" % p]
        return Proc(tag, argv, logdir)

    def ready(self, proc):
        return "READY" in proc.output()

    def leech(self, torrent, save_dir, port, seeder_port, logdir, tag, scratch):
        argv = [PY, LT_NODE, "leech", torrent, save_dir, port,
                "--peer", "127.0.0.1:%d" % seeder_port] + self._extra()
        return Proc(tag, argv, logdir)


class Aria2(Client):
    name = "aria2c"
    needs_tracker_seed = True

    def leech(self, torrent, save_dir, port, seeder_port, logdir, tag, scratch):
        argv = ["aria2c", "--dir", save_dir, "--listen-port", port,
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--bt-require-crypto=false",
                "--bt-min-crypto-level=plain", "--seed-time=0",
                "--file-allocation=falloc", "--disable-ipv6=true",
                "--summary-interval=0", "--console-log-level=notice",
                "--log", os.path.join(logdir, tag + ".aria2.log"), "--log-level=notice",
                "--no-conf=true", "--check-certificate=false", torrent]
        return Proc(tag, argv, logdir)


class Transmission(Client):
    name = "transmission"
    seeder_connects = True

    def leech(self, torrent, save_dir, port, seeder_port, logdir, tag, scratch):
        conf = os.path.join(scratch, tag + "-conf")
        os.makedirs(conf, exist_ok=True)
        settings = {
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
            "utp-enabled": False, "port-forwarding-enabled": False,
            "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
            "encryption": 0, "rename-partial-files": False, "peer-port": int(port),
            "download-dir": save_dir, "incomplete-dir-enabled": False,
            "speed-limit-down-enabled": False, "speed-limit-up-enabled": False,
            "ratio-limit-enabled": False, "start-added-torrents": True,
            "peer-limit-global": 200, "peer-limit-per-torrent": 60,
        }
        with open(os.path.join(conf, "settings.json"), "w") as f:
            json.dump(settings, f, indent=1)
        marker = os.path.join(scratch, tag + ".finished")
        script = os.path.join(scratch, tag + "-finish.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\ntouch '%s'\n" % marker)
        os.chmod(script, 0o755)
        argv = ["transmission-cli", "-g", conf, "-w", save_dir, "-p", port, "-et", "-M",
                "-D", "-U", "-f", script, torrent]
        proc = Proc(tag, argv, logdir)
        proc.marker = marker
        return proc

    def complete(self, proc):
        return os.path.exists(proc.marker)


def log(*args):
    print(*args, file=sys.stderr, flush=True)
