//! Shared helpers for bittern's criterion benches and the swarm benchmark.
