//! aria2c (Debian `aria2`) as the interop tests run it.

use std::path::Path;
use std::process::Command;

use crate::procs::LineProc;

/// Debian's aria2c.
pub const ARIA2C: &str = "/usr/bin/aria2c";

/// Whether aria2c is installed ([`crate::require`] decides skip or fail).
#[track_caller]
pub fn available() -> bool {
    crate::require("aria2c (Debian aria2)", Path::new(ARIA2C).exists())
}

/// aria2c with no config file, DHT, PEX and LPD off, seeding time 0,
/// listening on `port`, saving into `dir`, logging (info) to
/// `work/aria2c.log`; the caller adds what to fetch and any other flag.
pub fn command(port: u16, dir: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(ARIA2C);
    cmd.args([
        "--no-conf=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        "--seed-time=0",
        "--bt-stop-timeout=60",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--log-level=info",
    ])
    .arg(format!("--listen-port={port}"))
    .arg(format!("--dir={}", dir.display()))
    .arg(format!("--log={}", work.join("aria2c.log").display()));
    cmd
}

/// Starts `cmd` (see [`command`]) with its stdout lines and stderr in
/// `work/aria2c.out`.
pub fn spawn(cmd: Command, work: &Path) -> LineProc {
    LineProc::spawn("aria2c", cmd, work.join("aria2c.out"))
}

/// Waits (up to `limit`) for aria2c to exit; when it failed, prints the
/// last 40 lines of `work/aria2c.log` (newest first) and fails.
pub fn expect_success(aria: &mut LineProc, work: &Path, limit: std::time::Duration) {
    let status = aria.wait(limit);
    if !status.success() {
        let log = std::fs::read_to_string(work.join("aria2c.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "aria2c.log (last lines, newest first):\n{}",
            tail.join("\n")
        );
        aria.fail(&format!("exited with {status}"));
    }
}
