//! libtorrent (python3-libtorrent) driven through the one set of helper
//! scripts in `testkit/scripts/`, run by Debian's `/usr/bin/python3` (the
//! only Python that imports it). Every script keeps libtorrent on loopback
//! with DHT, LSD, UPnP and NAT-PMP off unless a test asks otherwise (see
//! `lt_common.py`).

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::LineProc;

/// Debian's Python, the only one that imports `python3-libtorrent`.
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether `/usr/bin/python3 -c 'import libtorrent'` works; when it does
/// not, fails under `BITTERN_REQUIRE_INTEROP=1`, else skips loudly
/// ([`crate::require`]).
#[track_caller]
pub fn available() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    crate::require(
        "python3-libtorrent (import libtorrent in /usr/bin/python3)",
        ok,
    )
}

/// The directory holding every test helper script.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// The helper script `name` in `testkit/scripts/` (panics when there is
/// none, naming the directory).
pub fn script(name: &str) -> PathBuf {
    let path = scripts_dir().join(name);
    assert!(path.is_file(), "no helper script {}", path.display());
    path
}

/// `/usr/bin/python3 SCRIPT ARGS...` for the helper script `name`.
pub fn python<I, S>(name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script(name)).args(args);
    cmd
}

/// `lt_seed.py TORRENT SAVE_DIR`: seeds once checked, prints `PORT n`.
pub fn seed_cmd(torrent: &Path, save: &Path) -> Command {
    python("lt_seed.py", [torrent.as_os_str(), save.as_os_str()])
}

/// `lt_leech.py TORRENT SAVE_DIR PEER_PORT TIMEOUT_S`: downloads from
/// 127.0.0.1:PEER_PORT, prints `PORT n` first and `DONE <bytes>` once
/// complete; exits 2 on timeout.
pub fn leech_cmd(
    torrent: &Path,
    save: &Path,
    peer_port: impl Display,
    timeout_s: impl Display,
) -> Command {
    python(
        "lt_leech.py",
        [
            torrent.as_os_str(),
            save.as_os_str(),
            OsStr::new(&peer_port.to_string()),
            OsStr::new(&timeout_s.to_string()),
        ],
    )
}

/// `lt_magnet_leech.py MAGNET SAVE_DIR PEER_PORT TIMEOUT_S`: fetches the
/// metadata (prints `METADATA ...`), then the data, from
/// 127.0.0.1:PEER_PORT.
pub fn magnet_leech_cmd(
    uri: &str,
    save: &Path,
    peer_port: impl Display,
    timeout_s: impl Display,
) -> Command {
    python(
        "lt_magnet_leech.py",
        [
            OsStr::new(uri),
            save.as_os_str(),
            OsStr::new(&peer_port.to_string()),
            OsStr::new(&timeout_s.to_string()),
        ],
    )
}

/// Starts `cmd` (one of the scripts above, which print `PORT n` first) as
/// `name` with its log in `log`, and returns it with that port (within
/// 30 s).
pub fn spawn_with_port(name: &'static str, cmd: Command, log: PathBuf) -> (LineProc, u16) {
    let mut p = LineProc::spawn(name, cmd, log);
    let line = p.expect_line("PORT ", Duration::from_secs(30));
    let port = line
        .parse()
        .unwrap_or_else(|e| p.fail(&format!("bad PORT line {line:?}: {e}")));
    (p, port)
}

/// A libtorrent seeder of `torrent` from `save` (log `work/lt_seed.log`),
/// listening on the port returned.
pub fn seeder(torrent: &Path, save: &Path, work: &Path) -> (LineProc, u16) {
    spawn_with_port(
        "libtorrent seeder",
        seed_cmd(torrent, save),
        work.join("lt_seed.log"),
    )
}
