#!/usr/bin/env bash
# torrent-get with transmission-remote -l's fields: bittern daemon against
# transmission-daemon (Debian) holding the same torrents, same run.
#
#   bash benches/daemon-rpc/run.sh                 # N = 1,000 and 10,000, 50 calls
#   bash benches/daemon-rpc/run.sh --n 1000 --calls 20
#
# Both daemons listen on 127.0.0.1 only (DHT, LPD, PEX, port forwarding off,
# torrents paused: nothing is announced). Work files go to
# /var/tmp/bittern-daemon-rpc (--out DIR), on disk like a real config dir.
# Both daemons run at the same niceness (--nice, default 0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
for p in transmission-daemon python3; do
    command -v "$p" >/dev/null || { echo "needs $p (apt-get install transmission-daemon python3)" >&2; exit 1; }
done
cargo build --release -p bittern-cli
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores"
echo "transmission: $(transmission-daemon --version 2>&1 | head -1)"
echo "bittern: $(git rev-parse --short HEAD)"
args=("$@")
[ "${#args[@]}" -eq 0 ] && args=(--n 1000 --n 10000 --calls 50)
exec python3 "$here/bench.py" --bittern "$repo/target/release/bittern" "${args[@]}"
