"""Adds a magnet link to `bittern daemon` with the PyPI transmission-rpc
package and follows it through torrent-get with the default field list.

Usage: trpc_magnet.py PORT MAGNET DOWNLOAD_DIR NAME SIZE
Checks the metadata state first if it is caught (name from dn or the
hash, no size, metadata under 100%), then waits for the real name and
size and for the download to complete. Prints OK at the end.
"""
import sys
import time

from transmission_rpc import Client

port, link, download_dir, name, size = (
    int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
c = Client(host="127.0.0.1", port=port)
t = c.add_torrent(link, download_dir=download_dir)
tid = t.id
again = c.add_torrent(link)
assert again.id == tid, (again.id, tid)
x = c.get_torrent(tid)
assert x.magnet_link.startswith("magnet:?xt=urn:btih:" + x.hash_string), x.magnet_link
if x.metadata_percent_complete < 1:
    assert x.total_size == 0, x.total_size
    assert x.name != name, x.name
    print("metadata state seen:", x.name, x.metadata_percent_complete, x.status)
for _ in range(600):
    x = c.get_torrent(tid)
    if x.metadata_percent_complete == 1 and x.percent_done == 1:
        break
    time.sleep(0.1)
else:
    raise SystemExit(f"not complete: {x.name} {x.metadata_percent_complete} {x.percent_done}")
assert x.name == name, x.name
assert x.total_size == size, x.total_size
assert len(x.get_files()) == 1, x.get_files()
c.remove_torrent(tid, delete_data=False)
print("OK")
