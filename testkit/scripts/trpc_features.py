"""Drives `bittern daemon`'s rename, bandwidth groups and move with the
PyPI transmission-rpc package (7.0.12), as a Python user calls them.

Usage: trpc_features.py PORT TORRENT DOWNLOAD_DIR MOVE_DIR
TORRENT is a multi-file torrent named `dir` with `sub/f.bin` and `g.bin`,
its data in place under DOWNLOAD_DIR. Prints OK at the end; any failure
raises.
"""
import sys
import time

from transmission_rpc import Client

port, torrent, download_dir, move_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = Client(host="127.0.0.1", port=port)
t = c.add_torrent(open(torrent, "rb"), download_dir=download_dir)
tid = t.id


def wait_status(want):
    for _ in range(400):
        x = c.get_torrent(tid)
        if x.status == want and x.percent_done == 1.0:
            return x
        time.sleep(0.05)
    raise AssertionError(f"status {x.status} {x.percent_done}, not {want}")


wait_status("seeding")
# A folder inside the torrent, then its top folder.
assert c.rename_torrent_path(tid, "dir/sub", "renamed") == ("dir/sub", "renamed")
assert c.rename_torrent_path(tid, "dir", "top") == ("dir", "top")
x = wait_status("seeding")
assert x.name == "top", x.name
names = sorted(f.name for f in x.get_files())
assert names == ["top/g.bin", "top/renamed/f.bin"], names
# Escapes are refused.
for path, name in [("top/g.bin", "../g.bin"), ("top/g.bin", ".."), ("top/../g.bin", "x")]:
    try:
        c.rename_torrent_path(tid, path, name)
    except Exception as e:  # TransmissionError
        assert "invalid" in str(e), e
    else:
        raise AssertionError(f"rename {path} -> {name} accepted")

# Bandwidth groups.
c.set_group("slow", speed_limit_down_enabled=True, speed_limit_down=40, speed_limit_up=9)
g = c.get_group("slow")
assert g is not None and g.name == "slow", g
assert g.speed_limit_down_enabled and g.speed_limit_down == 40, g.fields
assert not g.speed_limit_up_enabled and g.speed_limit_up == 9, g.fields
assert list(c.get_groups()) == ["slow"]
assert c.get_group("nope") is None
c.change_torrent(tid, group="slow")
assert c.get_torrent(tid).group == "slow"

# Reannounce is accepted (the tracker side is tested with transmission-remote).
c.reannounce_torrent(tid)

# Move the data; it seeds from the new place.
c.move_torrent_data(tid, move_dir)
x = wait_status("seeding")
assert x.download_dir == move_dir, x.download_dir
print("OK")
