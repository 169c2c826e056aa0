//! transmission-cli 3.00 (Debian `transmission-cli`) and `mktorrent`, as
//! the interop tests run them: a fresh config with DHT, LPD, PEX and port
//! forwarding off, bound to loopback.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::procs::Logged;

/// Debian's transmission-cli.
pub const TRANSMISSION: &str = "/usr/bin/transmission-cli";
/// Debian's mktorrent.
pub const MKTORRENT: &str = "/usr/bin/mktorrent";

/// Whether transmission-cli and mktorrent are installed ([`crate::require`]
/// decides skip or fail for each).
#[track_caller]
pub fn available() -> bool {
    let present = |tool: &str| {
        crate::require(
            &format!("{tool} (Debian transmission-cli, mktorrent)"),
            Path::new(tool).exists(),
        )
    };
    present(TRANSMISSION) && present(MKTORRENT)
}

/// transmission-cli with its stdout unbuffered: it writes its status
/// line with `\r` and no flush, so to a file the line that says
/// "Seeding" arrives only when stdio's 4 KiB buffer fills, some 40 s
/// later (more under load), and tests that wait for it time out.
pub fn cli() -> Command {
    let mut c = Command::new("/usr/bin/stdbuf");
    c.args(["-o0", TRANSMISSION]);
    c
}

/// How a transmission-cli run is configured (beyond what is always off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Encryption required (`-er`, `"encryption": 2`) instead of tolerated
    /// with plain preferred (`-et`, `"encryption": 0`).
    pub require_encryption: bool,
    /// uTP on (its default; off here unless set).
    pub utp: bool,
    /// Local Peer Discovery on (only ever inside a private network
    /// namespace).
    pub lpd: bool,
}

/// Writes `conf/settings.json` for a run on 127.0.0.1:`port` saving into
/// `dir`.
pub fn write_settings(conf: &Path, dir: &Path, port: u16, o: Options) {
    std::fs::create_dir_all(conf)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", conf.display()));
    let settings = format!(
        r#"{{"dht-enabled": false, "lpd-enabled": {lpd}, "pex-enabled": false,
 "utp-enabled": {utp}, "port-forwarding-enabled": false,
 "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1", "encryption": {enc},
 "rename-partial-files": false, "peer-port": {port}, "download-dir": "{dir}",
 "incomplete-dir-enabled": false, "speed-limit-down-enabled": false,
 "speed-limit-up-enabled": false, "ratio-limit-enabled": false,
 "start-added-torrents": true}}"#,
        lpd = o.lpd,
        utp = o.utp,
        enc = if o.require_encryption { 2 } else { 0 },
        dir = dir.display()
    );
    std::fs::write(conf.join("settings.json"), settings).expect("write transmission's settings");
}

/// The transmission-cli command for `what` (a torrent file or a magnet
/// link) with the config in `conf` (see [`write_settings`]).
pub fn command(what: &std::ffi::OsStr, dir: &Path, port: u16, conf: &Path, o: Options) -> Command {
    let enc = if o.require_encryption { "-er" } else { "-et" };
    let mut c = cli();
    c.arg("-g")
        .arg(conf)
        .arg("-w")
        .arg(dir)
        .args(["-p", &port.to_string(), enc, "-M", "-D", "-U"])
        .arg(what);
    c
}

/// Starts transmission-cli on `torrent` in `dir` on 127.0.0.1:`port`,
/// with a fresh config in `work/tr-conf` and its output in `work/tr.out`
/// and `work/tr.err`.
pub fn spawn(torrent: &Path, dir: &Path, port: u16, work: &Path, o: Options) -> Logged {
    let conf = work.join("tr-conf");
    write_settings(&conf, dir, port, o);
    let cmd = command(torrent.as_os_str(), dir, port, &conf, o);
    Logged::spawn("transmission-cli", cmd, work, "tr")
}

/// [`spawn`], returning once it has verified the data and says it is
/// seeding (panics after 60 s).
pub fn seeder(torrent: &Path, dir: &Path, port: u16, work: &Path, o: Options) -> Logged {
    let t = spawn(torrent, dir, port, work, o);
    t.wait_says("Seeding", Duration::from_secs(60));
    t
}

/// Runs `mktorrent -l PIECE_LOG2 -o OUT FILE` and returns the torrent's
/// bytes (panics when it fails).
pub fn mktorrent(file: &Path, out: &Path, piece_log2: u32) -> Vec<u8> {
    let made = Command::new(MKTORRENT)
        .args(["-l", &piece_log2.to_string(), "-o"])
        .arg(out)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mktorrent: {e}"));
    assert!(made.status.success(), "mktorrent: {made:?}");
    std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}
