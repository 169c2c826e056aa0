//! Changes that apply to running torrents without a restart: reannounces,
//! speed limits (own, group, session, alternative) and the alternative
//! speed schedule, see [`crate::limits`].

use log::{info, warn};

use super::{Ids, Inner, Torrents};
use crate::backend::Backend;
use crate::settings::Settings;

impl<B: Backend> Torrents<B> {
    /// Asks the selected torrents' trackers for peers (as early as the
    /// trackers' `min interval` allows); a stopped torrent does not announce.
    pub fn reannounce(&self, ids: &Ids) {
        let inner = self.inner.lock();
        for i in inner.select(ids) {
            // A torrent the engine does not run has nobody to announce.
            let _ = self.backend.reannounce(inner.entries[i].hash);
        }
    }

    /// Gives the engine the selected torrents' limits (their own, tightened
    /// by their group's) while they run.
    pub fn apply_limits(&self, ids: &Ids) {
        let inner = self.inner.lock();
        self.push_limits(&inner, ids);
    }

    pub(super) fn push_limits(&self, inner: &Inner, ids: &Ids) {
        for i in inner.select(ids) {
            let e = &inner.entries[i];
            let (down, up) = crate::limits::torrent_limits(&inner.settings, &e.record);
            // One that does not run gets them at its next start.
            let honors = e.record.honors_session_limits;
            let _ = self.backend.set_limits(e.hash, down, up, honors);
        }
    }

    /// Moves the peer listener to `port` now (see [`Backend::rebind`]):
    /// every torrent the engine ran is started again in the new session
    /// in the state it was in (paused, queued or running; its data
    /// vouched for by the resume state just saved), its counters folded
    /// into its record and the session's totals. Nothing changes when the
    /// port cannot be bound.
    ///
    /// # Errors
    /// The message for the client.
    pub fn set_peer_port(&self, port: u16) -> Result<(), String> {
        let mut inner = self.inner.lock();
        let finals = self
            .backend
            .rebind(port)
            .map_err(|e| format!("cannot listen for peers on port {port}: {e}"))?;
        let settings = inner.settings.clone();
        let (mut down, mut up) = (0, 0);
        for e in inner.entries.iter_mut() {
            let Some(status) = finals.get(&e.hash) else {
                continue;
            };
            down += status.downloaded;
            up += status.uploaded;
            e.record = e.folded(Some(status));
            e.dirty = true;
            self.launch(&settings, e);
        }
        inner.settings.cumulative_downloaded_bytes += down;
        inner.settings.cumulative_uploaded_bytes += up;
        self.store
            .save_settings(&inner.settings)
            .map_err(|e| e.to_string())?;
        self.save_dirty(&mut inner, false);
        Ok(())
    }

    /// Replaces the session settings: saved, and every limit they imply
    /// (session, alternative, groups) applied to the running torrents.
    /// `reschedule`: the alternative-speed schedule changed, so it is
    /// applied afresh at the next tick.
    ///
    /// # Errors
    /// The settings cannot be saved (they are in effect anyway).
    pub fn set_settings(&self, settings: Settings, reschedule: bool) -> Result<(), String> {
        let mut inner = self.inner.lock();
        inner.settings = settings;
        if reschedule {
            inner.alt_scheduled = None;
        }
        let (down, up) = crate::limits::session_limits(&inner.settings);
        self.backend.set_session_limits(down, up);
        let s = &inner.settings;
        self.backend.set_network(s.encryption.into(), s.pex_enabled);
        self.push_limits(&inner, &Ids::All);
        self.schedule_queue(&mut inner);
        self.store
            .save_settings(&inner.settings)
            .map_err(|e| e.to_string())
    }

    /// Follows the alternative-speed schedule: when the window it names
    /// opens or closes, `alt-speed-enabled` follows (Transmission's rule).
    pub(super) fn follow_schedule(&self, inner: &mut Inner) {
        let s = &inner.settings;
        if !s.alt_speed_time_enabled {
            inner.alt_scheduled = None;
            return;
        }
        let (weekday, minute) = crate::limits::local_now();
        let want = crate::limits::in_alt_window(
            weekday,
            minute,
            s.alt_speed_time_begin,
            s.alt_speed_time_end,
            s.alt_speed_time_day,
        );
        if inner.alt_scheduled == Some(want) {
            return;
        }
        inner.alt_scheduled = Some(want);
        if inner.settings.alt_speed_enabled != want {
            info!(
                "alternative speed limits {}",
                if want { "on" } else { "off" }
            );
            inner.settings.alt_speed_enabled = want;
            let (down, up) = crate::limits::session_limits(&inner.settings);
            self.backend.set_session_limits(down, up);
            if let Err(err) = self.store.save_settings(&inner.settings) {
                warn!("cannot save settings: {err}");
            }
        }
    }
}
