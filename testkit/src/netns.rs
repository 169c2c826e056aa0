//! Running one test inside a private network namespace that holds only
//! `lo`, for tests that start a program which binds wildcard addresses or
//! may otherwise reach past loopback (aria2c's DHT binds `0.0.0.0`).
//!
//! The test calls [`run_inside`] first: outside, it re-executes the test
//! binary under `unshare --net` for that one test and checks it passed
//! there; inside, it asserts that the process is in another namespace than
//! the one the test started in, that the namespace holds only `lo`, brings
//! `lo` up, and returns true so the caller runs the body. Needs root,
//! `unshare(1)` and `ip(8)` ([`crate::require`] decides skip or fail).

use std::process::Command;

/// Set in the child that runs the test body.
const INSIDE_ENV: &str = "BITTERN_TEST_NETNS";
/// The namespace the test started in, passed to the child to compare.
const OUTER_ENV: &str = "BITTERN_TEST_OUTER_NETNS";
/// Printed by the body's process once the namespace is checked.
const MARK: &str = "TEST-NETNS-RAN";

fn current_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Returns true when the caller is inside the private namespace and must
/// run the test body; false when it is outside (the body ran, and passed,
/// in a child) or the prerequisites are missing (skipped). `name` is the
/// test's full path in its binary (`module::test_name`).
///
/// # Panics
/// When the body failed in the namespace, or the namespace is not private
/// and `lo`-only.
pub fn run_inside(name: &str) -> bool {
    if std::env::var(INSIDE_ENV).as_deref() == Ok("1") {
        enter(name);
        return true;
    }
    let ok = crate::is_root() && crate::on_path("unshare") && crate::on_path("ip");
    if !crate::require(
        "root with unshare(1) and ip(8), for a private network namespace",
        ok,
    ) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, "1")
        .env(OUTER_ENV, current_netns())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in the namespace:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stderr.contains(&format!("{MARK} {name}")),
        "{name} did not run in the namespace:\n{stdout}\n{stderr}"
    );
    false
}

/// The network interfaces of this process's namespace (from
/// `/proc/self/net/dev`).
pub fn interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("/proc/self/net/dev");
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|i| i.trim().to_string())
        .collect()
}

/// Asserts that this process's namespace holds `lo` and nothing else
/// (`what` is the failure message).
#[track_caller]
pub fn assert_only_lo(what: &str) {
    assert_eq!(interfaces(), vec!["lo".to_string()], "{what}");
}

/// Inside: checks the namespace and brings `lo` up.
fn enter(name: &str) {
    let outer = std::env::var(OUTER_ENV).unwrap_or_default();
    assert!(
        outer.starts_with("net:["),
        "outer namespace unknown: {outer:?}"
    );
    assert_ne!(current_netns(), outer, "not in a private network namespace");
    assert_only_lo("the namespace must hold only lo");
    let s = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(s.success(), "ip link set lo up");
    eprintln!("{MARK} {name}");
}
