"""Helpers the benchmark harnesses share (scale, daemon-rpc, webseed, the
daemon soak): bencoding and a free loopback port. Debian's python3 only;
each harness puts benches/ (or, for the copied soak harness, its own
directory) on sys.path before importing it.
"""

import socket


def bencode(v):
    """Bencodes ints, bytes, str, lists and dicts (keys sorted as bytes)."""
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_results(path, text):
    """Writes a benchmark's report `text` to `path`, keeping what follows
    an "## Analysis" heading in the file there before (written by hand)."""
    prev = ""
    try:
        with open(path) as f:
            old = f.read()
        k = old.find("## Analysis")
        if k >= 0:
            prev = old[k:]
    except FileNotFoundError:
        pass
    with open(path, "w") as f:
        f.write(text + ("\n" + prev if prev else ""))
