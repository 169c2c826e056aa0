//! Issue 25, the daemon soak in short: `benches/reliability/daemon_soak.py
//! --short` (about 40 s) runs one `bittern daemon` holding a few dozen
//! torrents under churn on loopback — partners (bittern, libtorrent,
//! aria2c; some over uTP only, some encrypted) joining, finishing and
//! being SIGKILLed, torrents added (files and magnets) and removed over
//! RPC, `torrent-set` and `session-set`, the daemon SIGKILLed and
//! restarted twice, DHT and PEX on with a loopback bootstrap node — and
//! checks what the 2-hour run checks: every completed download
//! byte-identical, the list and settings after each restart equal to
//! those before the kill, no piece claimed that is not on disk, threads
//! and fds back at the empty daemon's once everything is removed. The
//! harness exits 1 on any failure; this test also reads its summary.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

#[test]
fn daemon_soak_short_mode_keeps_every_invariant() {
    if !libtorrent_available()
        || !bittern_testkit::require(
            "aria2c (Debian package aria2)",
            bittern_testkit::on_path("aria2c"),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("soak");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../benches/reliability/daemon_soak.py")
        .canonicalize()
        .unwrap();
    let run = Command::new(PYTHON)
        .arg(&harness)
        .args(["--short", "--out"])
        .arg(&out)
        .args(["--bittern", bin()])
        .output()
        .expect("run daemon_soak.py");
    let log =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    eprintln!(
        "{}",
        log.lines().rev().take(6).collect::<Vec<_>>().join("\n")
    );
    assert!(run.status.success(), "soak failed:\n{log}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k}: {summary}"))
    };
    assert_eq!(summary["failures"], serde_json::json!([]), "{summary}");
    assert_eq!(n("restarts"), 2, "{summary}");
    // Each restart compared the whole list, and the end of the churn too.
    assert!(n("list_checks") >= 3, "{summary}");
    assert!(n("daemon_downloads_checked") >= 1, "{summary}");
    assert!(n("partner_downloads_checked") >= 1, "{summary}");
    assert!(n("magnets_added") >= 1, "{summary}");
    assert!(n("claimed_pieces_checked") >= 1, "{summary}");
    assert!(n("partners_sigkilled") >= 1, "{summary}");
    // Back to the empty daemon's threads and fds after removing everything.
    let fig = |w: &str, k: &str| summary[w][k].as_u64().unwrap();
    assert!(
        fig("after_removal", "threads") <= fig("baseline", "threads") + 2,
        "{summary}"
    );
    assert!(
        fig("after_removal", "fds") <= fig("baseline", "fds") + 4,
        "{summary}"
    );
    // The samples were written.
    let csv = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
}
