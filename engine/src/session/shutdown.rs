//! A session's graceful stop, within its one stop deadline.

use std::thread::JoinHandle;
use std::time::Instant;

use log::{debug, warn};

use super::{AnnouncerSlot, Session};
use crate::torrent::{Ctl, TorrentCommand};

impl Session {
    /// Stops every torrent gracefully (resume state saved, `stopped`
    /// announced, threads ended) and closes the listener. The `stopped`
    /// announces get [`Timing::stop_announce_deadline`](crate::config::Timing)
    /// (3 s) from the start; the torrents' resume saves and file releases
    /// (local work, normally milliseconds) get `stop_save_deadline` (60 s),
    /// so a loaded machine does not lose resume state to a network timer.
    /// What is not done by its deadline is abandoned with a log line (the
    /// save threads finish on their own if the process lives on) and every
    /// handle counts as finished when this returns.
    pub fn shutdown(&mut self) {
        let began = Instant::now();
        let timing = &self.shared.config.timing;
        let deadline = began + timing.stop_announce_deadline;
        let saves_by = began + timing.stop_save_deadline.max(timing.stop_announce_deadline);
        let torrents = std::mem::take(&mut *self.torrents.lock());
        for t in &torrents {
            let _ = self
                .commands
                .send(Ctl::Command(t.id, TorrentCommand::Shutdown));
        }
        let unfinished = torrents.iter().filter(|t| !t.wait_until(saves_by)).count();
        if unfinished > 0 {
            warn!(
                "{unfinished} of {} torrents still saving at the stop deadline ({:?}); abandoning their stops",
                torrents.len(),
                saves_by - began
            );
        }
        self.registry.lock().clear();
        let lsd = self.shared.lsd.lock().take();
        if let Some(l) = lsd {
            l.join();
        }
        // Every torrent has asked for its `stopped`; send what is left, in
        // parallel, within what remains of the one stop deadline.
        let announcer =
            std::mem::replace(&mut *self.shared.announcer.lock(), AnnouncerSlot::Closed);
        if let AnnouncerSlot::Running(a) = announcer {
            if !a.shutdown(deadline.saturating_duration_since(Instant::now())) {
                warn!("tracker announcer still busy at the stop deadline; `stopped` announces abandoned");
            }
        }
        if let Some(c) = self.controller.take() {
            // Torrents still stopping are dropped with it (their handles
            // count as finished); it never waits on anything itself.
            if self
                .commands
                .send_deadline(Ctl::Exit, deadline.max(Instant::now()) + EXIT_GRACE)
                .is_err()
            {
                warn!("the controller did not take its exit command in time; detaching it");
            } else {
                join_by(c, deadline.max(Instant::now()) + EXIT_GRACE, "controller");
            }
        }
        if let Some(d) = &self.shared.dht {
            d.shutdown();
        }
        for mut l in std::mem::take(&mut self.listeners) {
            debug!("closing the listener on {}", l.addr());
            l.stop();
        }
        for mut a in std::mem::take(&mut self.utp_acceptors) {
            a.stop();
        }
        let took = began.elapsed();
        if unfinished > 0 || took > self.shared.config.timing.stop_announce_deadline + EXIT_GRACE {
            warn!("session stopped in {took:?}");
        } else {
            debug!("session stopped in {took:?}");
        }
    }
}

/// How long past the stop deadline the controller gets to take its exit
/// command and end (it drops the torrents still stopping).
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Joins `thread` if it ends by `deadline`; else leaves it (logged).
fn join_by(thread: JoinHandle<()>, deadline: Instant, what: &str) {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            warn!("the {what} thread is still busy at the stop deadline; detaching it");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if thread.join().is_err() {
        log::error!("the {what} thread panicked");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}
