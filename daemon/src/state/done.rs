//! What happens when a torrent completes, and when it has seeded enough:
//! its data moves from the incomplete dir to its download dir; the
//! torrent-done script runs with Transmission's `TR_*` environment; a seed
//! stops at its ratio or idle limit (own or the session's) and stays
//! stopped, `isFinished`, across restarts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use bittern_engine::TorrentState;
use log::{info, warn};

use super::{Entry, Inner, Torrents};
use crate::backend::Backend;
use crate::settings::Settings;

impl<B: Backend> Torrents<B> {
    /// Entry `i` is complete: move it out of the incomplete dir, and with
    /// `downloaded` (it completed by downloading in this engine run) run
    /// the done script, after the move.
    pub(super) fn on_complete(&self, inner: &mut Inner, i: usize, downloaded: bool) {
        let settings = inner.settings.clone();
        let e = &mut inner.entries[i];
        // Counted before a move restarts the torrent in the engine.
        let bytes = e
            .folded(self.backend.status(e.hash).as_ref())
            .downloaded_ever;
        if let Some(dir) = e.record.final_dir.clone() {
            let moved = std::fs::create_dir_all(&dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))
                .and_then(|()| self.relocate(&settings, e, &dir, true));
            match moved {
                Ok(()) => info!("{}: complete, moved to {}", e.name(), dir.display()),
                Err(err) => {
                    // It stays in the incomplete dir; not tried again.
                    warn!("{}: {err}", e.name());
                    e.record.final_dir = None;
                    e.dirty = true;
                }
            }
        }
        if downloaded {
            e.done_handled = true;
            if settings.script_torrent_done_enabled
                && !settings.script_torrent_done_filename.is_empty()
            {
                run_done_script(&settings, e, bytes);
            }
        }
    }

    /// Stops seeds that reached their ratio or idle limit.
    pub(super) fn enforce_seed_limits(&self, inner: &mut Inner) {
        let s = &inner.settings;
        let (ratio_on, ratio, idle_on, idle) = (
            s.seed_ratio_limited,
            s.seed_ratio_limit,
            s.idle_seeding_limit_enabled,
            s.idle_seeding_limit,
        );
        for e in &mut inner.entries {
            if e.record.paused || e.queued {
                continue;
            }
            let Some(st) = self.backend.status(e.hash) else {
                continue;
            };
            if st.state != TorrentState::Seeding {
                continue;
            }
            let r = &e.record;
            let ratio_limit = match r.seed_ratio_mode {
                1 => Some(r.seed_ratio_limit),
                0 if ratio_on => Some(ratio),
                _ => None,
            };
            let idle_minutes = match r.seed_idle_mode {
                1 => Some(u64::try_from(r.seed_idle_limit).unwrap_or(0)),
                0 if idle_on => Some(idle),
                _ => None,
            };
            let folded = e.folded(Some(&st));
            // Transmission's ratio: uploaded over downloaded, or over the
            // size for a torrent that came complete.
            let base = if folded.downloaded_ever > 0 {
                folded.downloaded_ever
            } else {
                st.wanted_bytes
            };
            let ratio_done = ratio_limit
                .is_some_and(|l| base > 0 && folded.uploaded_ever as f64 / base as f64 >= l);
            let idle_done = idle_minutes
                .is_some_and(|m| e.last_active.elapsed().as_secs() >= m.saturating_mul(60));
            if ratio_done || idle_done {
                info!(
                    "{}: {} limit reached, stopping",
                    e.name(),
                    if ratio_done {
                        "seed ratio"
                    } else {
                        "idle seeding"
                    }
                );
                e.record.paused = true;
                e.record.finished = true;
                e.bypass_queue = false;
                e.dirty = true;
                e.touched = Instant::now();
                let _ = self.backend.pause(e.hash);
            }
        }
    }
}

/// Local time as `ctime` writes it, without its line feed.
fn local_time() -> String {
    // SAFETY: `time(NULL)` only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `ctime_r` writes at most 26 bytes into a 64-byte buffer.
    let p = unsafe { libc::ctime_r(&now, buf.as_mut_ptr()) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: `ctime_r` wrote a NUL-terminated string into `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .trim_end()
        .to_string()
}

/// Starts the torrent-done script without waiting for it (a thread reaps
/// it), with the variables Transmission sets.
fn run_done_script(settings: &Settings, e: &Entry, downloaded: u64) {
    let program = Path::new(&settings.script_torrent_done_filename);
    let trackers: Vec<String> = e
        .metainfo
        .as_ref()
        .map(|m| m.trackers().into_iter().flatten().collect())
        .unwrap_or_default();
    let mut cmd = Command::new(program);
    cmd.env("TR_APP_VERSION", crate::rpc::VERSION)
        .env("TR_TIME_LOCALTIME", local_time())
        .env("TR_TORRENT_DIR", &e.record.save_dir)
        .env("TR_TORRENT_HASH", e.hash.to_hex())
        .env("TR_TORRENT_ID", e.id.to_string())
        .env("TR_TORRENT_NAME", e.name())
        .env("TR_TORRENT_LABELS", e.record.labels.join(","))
        .env("TR_TORRENT_BYTES_DOWNLOADED", downloaded.to_string())
        .env("TR_TORRENT_TRACKERS", trackers.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            info!("{}: running {}", e.name(), program.display());
            let reaper = std::thread::Builder::new()
                .name("bittern-done-script".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            if let Err(err) = reaper {
                warn!("cannot wait for the done script: {err}");
            }
        }
        Err(err) => warn!("cannot run {}: {err}", program.display()),
    }
}
