#!/usr/bin/env bash
# The daemon soak of issue 25 (see daemon_soak.py): builds the release
# binary, copies it and the harness into a fresh output directory (so a
# rebuild or an edit during the run changes nothing), runs the soak under
# nice, then draws samples.csv into soak.png (installs Debian's
# python3-matplotlib for that when missing). Loopback only.
#   benches/reliability/daemon_soak.sh                # 2 h, 2,000 torrents, 12 restarts
#   benches/reliability/daemon_soak.sh --minutes 15 --restarts 3
#   OUT=/var/tmp/bittern-soak/mine benches/reliability/daemon_soak.sh ...
# Exit status: the soak's (0 only when every check passed).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${OUT:-/var/tmp/bittern-soak/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out/harness"
if [ -z "${BITTERN:-}" ]; then
    (cd "$root" && cargo build --release -q -p bittern-cli) || exit 2
    BITTERN="$root/target/release/bittern"
fi
cp "$BITTERN" "$out/harness/bittern"
cp "$here"/daemon_soak.py "$here"/daemon_soak_plot.py "$here"/soaklib.py "$here"/../benchlib.py "$here"/lt_peer.py "$out/harness/"
(cd "$root" && git rev-parse HEAD 2>/dev/null) > "$out/commit.txt"
echo "output: $out"
nice -n 19 /usr/bin/python3 "$out/harness/daemon_soak.py" --out "$out" \
    --bittern "$out/harness/bittern" "$@"
status=$?
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null 2>&1 || true
fi
/usr/bin/python3 "$out/harness/daemon_soak_plot.py" "$out" "$out/soak.png" || true
echo "soak exit status $status; output in $out"
exit $status
