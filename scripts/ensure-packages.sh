#!/usr/bin/env bash
# Installs whichever of the Debian packages named as arguments are missing
# (apt-get, with sudo when not root). Used by scripts/test.sh and the
# benchmark run.sh scripts:
#   bash scripts/ensure-packages.sh python3-libtorrent aria2 ...
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    # nginx-light's postinst would start the packaged service on port 80;
    # the web-seed tests run their own nginx on 127.0.0.1, so keep it off
    # (policy-rc.d exit 101 = "do not start services"), when we add it.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ -n "$policy" ]; then $sudo rm -f "$policy"; fi
fi
