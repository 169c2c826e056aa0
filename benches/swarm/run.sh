#!/usr/bin/env bash
# Side-by-side swarm benchmark: bittern against libtorrent, aria2c and
# transmission-cli, on loopback inside a network namespace that holds only
# `lo` (falls back to plain loopback where `unshare -n` is not allowed).
#
#   bash benches/swarm/run.sh [--quick] [--runs N] [--runs-big N] [--only REGEX] [--sets REGEX]
#                             [--no-tools] [--no-transfers] [--clean]
#                             [--bittern-old PATH] [--v2] [--results FILE]
#   bash benches/swarm/run.sh --magnet [--runs N]
#
# --quick: the 256 MiB data set only, one run each (a few minutes).
# Full: both data sets, 5 runs each (--runs-big N for the 1 GiB transfers).
# Data and logs live in /var/tmp/bittern-bench (--cache DIR); --clean deletes
# the generated data at the end. Results go to benches/RESULTS.md.
# --bittern-old PATH: an older bittern build runs beside the current one
# (bittern-old→bittern-old, bittern-old→4×bittern-old), with ratio rows of
# the current build against it: a change against what came before, same run.
# --v2: the core transfers also on v2-only torrents of the same data (label
# suffix "(v2)"), with ratio rows of each against its v1 run.
# --magnet: instead, the magnet benchmark (benches/swarm/magnet.py): time to
# metadata and to completion from a magnet link alone (64 MiB, one
# libtorrent seeder in x.pe), bittern against libtorrent; results go to
# benches/RESULTS-magnet.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

packages=(python3-libtorrent mktorrent transmission-cli aria2 iproute2 util-linux)
bash scripts/ensure-packages.sh "${packages[@]}"

cargo build --release -p bittern-cli

cmd="bash benches/swarm/run.sh $*"
py=/usr/bin/python3 # Debian's: the one that imports libtorrent
script="$here/bench.py"
case " $* " in *" --magnet "*) script="$here/magnet.py" ;; esac
export PYTHONDONTWRITEBYTECODE=1
if unshare -n true 2>/dev/null; then
    note="network namespace (unshare -n) holding only lo"
    # shellcheck disable=SC2016
    exec unshare -n -- /bin/sh -c 'ip link set lo up && exec "$@"' sh \
        "$py" "$script" --netns-note "$note" --command "$cmd" "$@"
else
    note="plain loopback: unshare -n is not allowed here, so other traffic on lo is possible"
    exec "$py" "$script" --netns-note "$note" --command "$cmd" "$@"
fi
