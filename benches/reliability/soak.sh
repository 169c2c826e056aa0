#!/usr/bin/env bash
# Soak swarm: a seeder and a tracker up for the whole run, leechers joining,
# finishing, seeding, being SIGKILLed and SIGTERMed; every leecher
# directory must end byte-identical; threads, fds and RSS of the seeder and
# tracker are sampled from /proc. See soak.py for the options.
#   benches/reliability/soak.sh --minutes 30
exec python3 "$(dirname "$0")/soak.py" "$@"
