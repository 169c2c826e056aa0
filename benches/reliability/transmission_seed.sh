#!/usr/bin/env bash
# Issue 17: transmission-cli 3.00 seeds a 64 MiB file (256 KiB pieces,
# torrent by mktorrent) on 127.0.0.1, `bittern download --exit-on-complete`
# fetches it. Prints, per run, whether bittern finished within LIMIT
# seconds and whether the data is byte-identical; with CAPTURE=1 the
# conversation is recorded with tcpdump (needs root) and decoded with
# btwire.py next to this script (REQUEST/PIECE/REJECT/CANCEL timeline).
#   benches/reliability/transmission_seed.sh [RUNS]
#   BITTERN=/path/to/bittern (default: target/release/bittern)
#   LIMIT=90 CAPTURE=0 KEEP=0
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${BITTERN:-$here/../../target/release/bittern}
runs=${1:-3}
limit=${LIMIT:-90}
for run in $(seq 1 "$runs"); do
    w=$(mktemp -d "${TMPDIR:-/tmp}/bittern-tr.XXXXXX")
    mkdir -p "$w/src" "$w/dst" "$w/conf"
    head -c $((64 * 1024 * 1024)) /dev/urandom > "$w/src/data.bin"
    mktorrent -l 18 -o "$w/t.torrent" "$w/src/data.bin" > /dev/null
    tport=$((20000 + RANDOM % 10000))
    bport=$((tport + 1))
    cat > "$w/conf/settings.json" <<J
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
 "utp-enabled": false, "port-forwarding-enabled": false,
 "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1", "encryption": 0,
 "rename-partial-files": false, "peer-port": $tport, "download-dir": "$w/src",
 "incomplete-dir-enabled": false, "speed-limit-down-enabled": false,
 "speed-limit-up-enabled": false, "ratio-limit-enabled": false,
 "start-added-torrents": true, "message-level": 3}
J
    td=
    if [ "${CAPTURE:-0}" = 1 ]; then
        tcpdump -i lo -B 262144 -w "$w/cap.pcap" port "$tport" 2> "$w/tcpdump.err" &
        td=$!
        sleep 1
    fi
    transmission-cli -g "$w/conf" -w "$w/src" -p "$tport" -et -M -D -U "$w/t.torrent" \
        > "$w/tr.out" 2> "$w/tr.err" &
    tr=$!
    for _ in $(seq 1 300); do
        grep -q Seeding "$w/tr.out" && break
        sleep 0.2
    done
    start=$(date +%s.%N)
    timeout "$limit" "$bin" -vv download "$w/t.torrent" -d "$w/dst" -p "$bport" \
        --bind 127.0.0.1 --peer "127.0.0.1:$tport" --exit-on-complete \
        > "$w/b.out" 2> "$w/b.err"
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    kill "$tr"
    wait "$tr" 2> /dev/null
    if [ -n "$td" ]; then
        sleep 1
        kill "$td"
        wait "$td" 2> /dev/null
        python3 "$here/btwire.py" "$w/cap.pcap" "$tport" > "$w/messages.txt"
        echo "  wire: $(awk '{print $2, $3}' "$w/messages.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
    fi
    if cmp -s "$w/src/data.bin" "$w/dst/data.bin"; then same=identical; else same=DIFFERENT; fi
    echo "run $run: exit $rc after ${secs%.*} s, data $same, $(tail -1 "$w/b.out")"
    if [ "${KEEP:-0}" = 1 ]; then echo "  kept $w"; else rm -rf "$w"; fi
done
