"""Drives `bittern daemon` with the PyPI transmission-rpc package (7.0.12).

Usage: trpc_client.py PORT TORRENT DOWNLOAD_DIR
Does what a Python user does: connect (session-get at once), add a
torrent stopped with labels, list with the default 75-field torrent-get,
start and stop it, change labels and a limit, read properties (each reads
a field the daemon must have sent), session stats, free space, remove.
Prints OK at the end; any failure raises.
"""
import pathlib
import sys
import time

from transmission_rpc import Client

port, torrent, download_dir = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
c = Client(host="127.0.0.1", port=port)
s = c.get_session()
assert s.rpc_version == 17, s.rpc_version
assert s.version.startswith("4.0.6 (bittern"), s.version
assert s.download_dir

t = c.add_torrent(torrent, paused=True, download_dir=download_dir, labels=["py"])
tid = t.id


def wait_status(want):
    for _ in range(200):
        x = c.get_torrent(tid)
        if x.status == want:
            return x
        time.sleep(0.05)
    raise AssertionError(f"status {x.status}, not {want}")


# bittern checks the data of a torrent added stopped, then it is stopped.
wait_status("stopped")
all_ = c.get_torrents()
assert [x.id for x in all_] == [tid], all_
x = all_[0]
assert x.name == "a.bin", x.name
assert x.status == "stopped", x.status
assert x.labels == ["py"], x.labels
assert x.download_dir == download_dir, x.download_dir
assert x.total_size == 1_500_000, x.total_size
files = x.get_files()
assert len(files) == 1 and files[0].size == 1_500_000 and files[0].selected, files

c.start_torrent(tid)
c.change_torrent(tid, labels=["py", "x"], upload_limit=10, upload_limited=True)
x = c.get_torrent(tid)
assert x.labels == ["py", "x"], x.labels
assert x.upload_limit == 10, x.upload_limit
x = wait_status("seeding")
assert x.progress == 100.0, x.progress
assert x.hash_string == t.hash_string
assert x.added_date.timestamp() > 0
assert x.eta is None
c.stop_torrent(tid)
assert c.get_torrent(tid).status == "stopped"

stats = c.session_stats()
assert stats.torrent_count == 1, stats.torrent_count
assert c.free_space("/tmp") > 0
c.remove_torrent(tid, delete_data=False)
assert c.get_torrents() == []
print("OK")
