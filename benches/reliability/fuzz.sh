#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ one after another (CPU is scarce),
# each for SECS seconds (default 225: 15 targets ~ 56 CPU-minutes), and
# prints the executions and result of each run.
#   benches/reliability/fuzz.sh [SECS] [TARGET...]
set -u
cd "$(dirname "$0")/../../fuzz"
secs=${1:-225}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(bencode metainfo message magnet tracker_http udp_codec server_request handshake krpc extension ut_metadata ut_pex utp_packet lsd mse hashes)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null 2>&1 || { echo "fuzz build failed"; exit 1; }
log_dir=${FUZZ_LOG_DIR:-/tmp/bittern-fuzz-logs}
mkdir -p "$log_dir"
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    log="$log_dir/$t.log"
    # -fork=0, one job: a single core at low priority.
    nice -n 10 cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "$t: rc=$rc secs=$secs execs=${execs:-?} ${cov:-} corpus=$(ls "corpus/$t" | wc -l)"
    [ $rc -ne 0 ] && { status=1; grep -E 'panicked|ERROR|artifact' "$log" | head -5; }
done
exit $status
