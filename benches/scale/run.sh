#!/usr/bin/env bash
# Scale benchmark: N tiny complete torrents in one bittern process and in
# transmission-daemon, side by side, on loopback inside a network namespace
# that holds only `lo` (plain loopback where `unshare -n` is not allowed).
#
#   bash benches/scale/run.sh --n 1000 [bench.py run options]
#   bash benches/scale/run.sh --report-only
#
# Raw figures and logs go to /var/tmp/bittern-scale (--out DIR); after a
# run, every N measured so far is rendered to benches/RESULTS-scale.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

py=/usr/bin/python3 # Debian's: the one that imports libtorrent
export PYTHONDONTWRITEBYTECODE=1
if [ "${1:-}" = "--report-only" ]; then
    shift
    exec "$py" "$here/bench.py" report "$@"
fi

packages=(python3-libtorrent transmission-daemon transmission-cli opentracker iproute2 util-linux)
bash scripts/ensure-packages.sh "${packages[@]}"

cargo build --release -p bittern-cli

cmd="bash benches/scale/run.sh $*"
if unshare -n true 2>/dev/null; then
    note="network namespace (unshare -n) holding only lo"
    # shellcheck disable=SC2016
    unshare -n -- /bin/sh -c 'ip link set lo up && exec "$@"' sh \
        "$py" "$here/bench.py" run --netns-note "$note" --command "$cmd" "$@"
else
    note="plain loopback: unshare -n is not allowed here, so other traffic on lo is possible"
    "$py" "$here/bench.py" run --netns-note "$note" --command "$cmd" "$@"
fi
exec "$py" "$here/bench.py" report
