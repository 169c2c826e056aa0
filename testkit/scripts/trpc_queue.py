"""Drives `bittern daemon`'s seed queue with the PyPI transmission-rpc
package (7.0.12): a queue of one seed, three complete torrents added;
queue_top and start_torrent_now as a Python user (or Sonarr) calls them.

Usage: trpc_queue.py PORT DOWNLOAD_DIR TORRENT...
Prints OK at the end; any failure raises.
"""
import sys
import time

from transmission_rpc import Client

port, download_dir, torrents = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
c = Client(host="127.0.0.1", port=port)
c.set_session(seed_queue_enabled=True, seed_queue_size=1)
s = c.get_session()
assert s.seed_queue_enabled and s.seed_queue_size == 1, s.fields
ids = [c.add_torrent(open(t, "rb"), download_dir=download_dir).id for t in torrents]


def wait(want):
    got = None
    for _ in range(400):
        got = [c.get_torrent(i).status for i in ids]
        if got == want:
            return
        time.sleep(0.05)
    raise AssertionError(f"statuses {got}, not {want}")


wait(["seeding", "seed pending", "seed pending"])
positions = [c.get_torrent(i).queue_position for i in ids]
assert positions == [0, 1, 2], positions
c.queue_top(ids[2])
wait(["seed pending", "seed pending", "seeding"])
assert c.get_torrent(ids[2]).queue_position == 0
c.queue_bottom(ids[2])
wait(["seeding", "seed pending", "seed pending"])
c.start_torrent_now(ids[1])
wait(["seeding", "seeding", "seed pending"])
c.stop_torrent(ids[0])
wait(["stopped", "seeding", "seeding"])
print("OK")
