#!/usr/bin/env bash
# Web-seed (BEP 19) benchmark: one file served by nginx on 127.0.0.1,
# downloaded from the web seed alone by bittern, libtorrent (url-list
# torrent) and aria2c (the same torrent, and the URL directly), in the same
# run, one after the other. Inside a network namespace holding only `lo`
# when `unshare -n` is allowed.
#
#   bash benches/webseed/run.sh [--quick] [--cache DIR] [--results FILE]
#
# --quick: a 256 MiB file (default 1 GiB). Results: benches/RESULTS-webseed.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
for p in python3-libtorrent aria2 nginx-light; do
    dpkg -s "$p" >/dev/null 2>&1 || { echo "missing Debian package $p (apt-get install $p)" >&2; exit 1; }
done
cargo build --release -p bittern-cli
cmd="bash benches/webseed/run.sh $*"
export PYTHONDONTWRITEBYTECODE=1
py=/usr/bin/python3 # Debian's: the one that imports libtorrent
if unshare -n true 2>/dev/null; then
    note="network namespace (unshare -n) holding only lo"
    # shellcheck disable=SC2016
    exec unshare -n -- /bin/sh -c 'ip link set lo up && exec "$@"' sh \
        "$py" "$here/bench.py" --netns-note "$note" --command "$cmd" "$@"
else
    note="plain loopback: unshare -n is not allowed here"
    exec "$py" "$here/bench.py" --netns-note "$note" --command "$cmd" "$@"
fi
