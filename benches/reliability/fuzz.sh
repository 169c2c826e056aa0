#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ one after another (CPU is scarce),
# each for SECS seconds of wall time (default 225: 17 targets ~ 64 minutes),
# at nice 19, and prints the executions, the CPU time it got (user + sys)
# and the result of each run. FUZZ_JOBS=N runs N targets at once.
#   benches/reliability/fuzz.sh [SECS] [TARGET...]
set -u
cd "$(dirname "$0")/../../fuzz"
secs=${1:-225}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(bencode metainfo message magnet tracker_http udp_codec server_request handshake krpc extension ut_metadata ut_pex utp_packet lsd mse hashes rpc)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null 2>&1 || { echo "fuzz build failed"; exit 1; }
log_dir=${FUZZ_LOG_DIR:-/tmp/bittern-fuzz-logs}
mkdir -p "$log_dir"
jobs=${FUZZ_JOBS:-1}
run_one() {
    local t=$1
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    local log="$log_dir/$t.log"
    # -fork=0, one job per target, low priority
    /usr/bin/time -f "cpu %U %S" -o "$log_dir/$t.time" nice -n 19 \
        cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 >"$log" 2>&1
    local rc=$?
    local execs cov cpu
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    cpu=$(awk '/^cpu/ {printf "%.0f", $2 + $3}' "$log_dir/$t.time" 2>/dev/null)
    echo "$t: rc=$rc wall=${secs}s cpu=${cpu:-?}s execs=${execs:-?} ${cov:-} corpus=$(ls "corpus/$t" | wc -l)"
    [ $rc -ne 0 ] && { grep -E 'panicked|ERROR|artifact' "$log" | head -5; return 1; }
    return 0
}
status=0
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
