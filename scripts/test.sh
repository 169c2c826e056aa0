#!/usr/bin/env bash
# Runs bittern's whole test suite on a fresh Debian machine.
#
# Installs the real BitTorrent tools the interop tests drive (libtorrent's
# Python bindings, mktorrent, transmission-cli, transmission-daemon, aria2,
# ctorrent, opentracker),
# nginx-light (the web-seed tests) and headless chromium with
# chromedriver (the daemon's web page test), iproute2 (the LSD and
# shaped-link uTP tests' network namespace, tc) and nftables (random loss
# in the shaped-link uTP tests' namespace) with apt-get, and PyPI's
# transmission-rpc (the Python client the daemon tests drive) into a
# venv at target/interop-venv, then runs every test in the workspace. With
# BITTERN_REQUIRE_INTEROP=1 (set here) every test that needs something the
# machine may lack fails instead of skipping: a missing tool, but also root
# (the disk-full tests mount a tmpfs), a temp dir off tmpfs (TMPDIR or
# /var/tmp), cachestat(2), a boot id and an IPv6 loopback. CI runs this as
# root; elsewhere run it as root, or run `cargo test --workspace` without
# the variable to let those tests skip loudly (bittern-testkit has the rule).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-libtorrent mktorrent transmission-cli transmission-daemon aria2 ctorrent opentracker python3-venv nginx-light chromium chromium-driver iproute2 nftables)
bash scripts/ensure-packages.sh "${packages[@]}"

venv=target/interop-venv
if ! "$venv/bin/python" -c 'import transmission_rpc' 2>/dev/null; then
    echo "creating $venv with transmission-rpc"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'transmission-rpc==7.0.12'
fi

export BITTERN_REQUIRE_INTEROP=1
cargo test --workspace --locked
