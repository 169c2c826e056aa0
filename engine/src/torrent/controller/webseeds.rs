//! A downloading torrent's web seeds (BEP 19), driven by the controller:
//! the [`WebSeeds`] component fetches, this module decides what.
//!
//! - While the torrent downloads and its metainfo has a `url-list` (and
//!   the session allows web seeds), a [`WebSeeds`] runs; it stops when the
//!   torrent seeds, pauses, fails or stops (`follow_state`, called after
//!   every event).
//! - An idle seed gets a run of pickable pieces (wanted, missing, nobody
//!   fetching them) about [`WebSeedConfig::max_request_bytes`] long, taken
//!   from the end of the largest gap of such pieces (BEP 19: peers and
//!   seeds then rarely meet). The picker holds the run's pieces
//!   [`reserve`](crate::picker::PiecePicker::reserve)d under the seed's key,
//!   so peers get them only as endgame duplicates.
//! - A written piece's blocks are reported to the picker as received from
//!   the seed, so it is verified like any piece a peer completed; a failed
//!   hash is reported back to the seed (which is dropped after a few).
//! - Seeds write under the torrent's block claims, so a seed and a peer
//!   never write the same block, and a piece is never written again once
//!   complete.
//! - Endgame: when peers complete a piece a seed's run still had ahead of
//!   it, that run is cancelled; its other pieces go back to the picker.
//! - Events come back through the controller's `done` channel, tagged with
//!   a generation, so a stopped set of seeds' late events are ignored.

use std::ops::Range;

use crate::webseed::{file_urls, EventSink, WebSeed, WebSeedEvent, WebSeeds};

use super::*;

/// Keys of web seeds in the picker: far above any peer's key.
const WEBSEED_KEY: u64 = 1 << 63;

/// One seed as the controller sees it.
struct Slot {
    /// The run it works on, and its first piece not reported written.
    run: Option<(Range<usize>, usize)>,
    /// A cancel was asked for the run (its `RunEnded` will come).
    cancelling: bool,
    /// It takes no run before this.
    ready_at: Instant,
    dropped: bool,
}

/// The running web seeds of one torrent.
pub(crate) struct Driver {
    seeds: WebSeeds,
    generation: u64,
    slots: Vec<Slot>,
    /// Pieces a run left part written when it ended early: the seed shares
    /// the blame if one fails its hash.
    partial: HashMap<usize, usize>,
    /// Bytes of `seeds.received()` already counted.
    counted: u64,
    rate: RateMeasure,
}

fn key(seed: usize) -> PeerKey {
    PeerKey(WEBSEED_KEY + seed as u64)
}

fn seed_of(key: PeerKey) -> Option<usize> {
    key.0.checked_sub(WEBSEED_KEY).map(|s| s as usize)
}

/// What web seeds show in the status: running seeds, bytes, rate.
pub(crate) struct WebSeedStatus {
    pub seeds: usize,
    pub downloaded: u64,
    pub rate: f64,
}

impl Controller {
    /// Starts or stops the web seeds to match the torrent's state.
    pub(super) fn webseeds_follow_state(&mut self) {
        let wanted =
            self.state == TorrentState::Downloading && self.stopping.is_none() && !self.finished;
        match (&self.webseeds, wanted) {
            (None, true) => self.start_webseeds(),
            (Some(_), false) => self.stop_webseeds(),
            _ => {}
        }
    }

    fn start_webseeds(&mut self) {
        let cfg = &self.session.config;
        if !cfg.web_seeds || self.webseeds_tried {
            return;
        }
        self.webseeds_tried = true;
        let Some(web) = self.meta.web.as_deref() else {
            return;
        };
        let mut urls: Vec<&String> = Vec::new();
        for u in &web.url_list {
            let lower = u.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                info!("{}: ignoring web seed {u} (not http)", self.short());
            } else if !urls.contains(&u) {
                urls.push(u);
            }
        }
        if urls.is_empty() {
            return;
        }
        let list: Vec<WebSeed> = urls
            .iter()
            .map(|u| WebSeed {
                url: (*u).clone(),
                file_urls: file_urls(u, &web.info),
            })
            .collect();
        self.webseed_generation += 1;
        let generation = self.webseed_generation;
        let (id, done) = (self.id, self.links.done.clone());
        let sink = EventSink::func(move |e| {
            done.send(Done::WebSeed(id, generation, Box::new(e)))
                .is_ok()
        });
        let seeds = match WebSeeds::spawn_with(
            self.storage.clone(),
            list,
            cfg.web_seed.clone(),
            sink,
            Some(self.claims.clone()),
        ) {
            Ok(s) => s,
            Err(e) => {
                warn!("{}: cannot start web seeds: {e}", self.short());
                return;
            }
        };
        info!("{}: {} web seed(s)", self.short(), seeds.len());
        let now = Instant::now();
        let slots = (0..seeds.len())
            .map(|_| Slot {
                run: None,
                cancelling: false,
                ready_at: now,
                dropped: false,
            })
            .collect();
        self.webseeds = Some(Box::new(Driver {
            seeds,
            generation,
            slots,
            partial: HashMap::new(),
            counted: 0,
            rate: RateMeasure::new(Duration::from_secs(20), now),
        }));
        self.assign_webseeds(now);
    }

    /// Stops the seeds (without waiting for their threads) and gives their
    /// pieces back to the picker. A seed's thread may still finish the one
    /// block it is writing: under its claim, so nobody else writes it.
    fn stop_webseeds(&mut self) {
        let Some(d) = self.webseeds.take() else {
            return;
        };
        // Allow a restart (a resumed or re-downloading torrent).
        self.webseeds_tried = false;
        for (s, slot) in d.slots.iter().enumerate() {
            if let Some((run, next)) = &slot.run {
                for p in *next..run.end {
                    picker!(self).release_piece(key(s), p);
                }
            }
        }
        self.webseed_bytes += d.counted;
        drop(d);
    }

    /// Hands runs to idle seeds while there are pickable pieces.
    pub(super) fn assign_webseeds(&mut self, now: Instant) {
        if self.state != TorrentState::Downloading || self.stopping.is_some() {
            return;
        }
        let short = self.short();
        let Some(d) = self.webseeds.as_mut() else {
            return;
        };
        let pl = self.storage.layout().piece_length().max(1);
        let want = (self.session.config.web_seed.max_request_bytes / pl).max(1) as usize;
        for s in 0..d.slots.len() {
            let slot = &d.slots[s];
            if slot.dropped || slot.run.is_some() || slot.ready_at > now {
                continue;
            }
            let Some(run) = largest_gap_tail(picker!(self), want) else {
                return;
            };
            for p in run.clone() {
                picker!(self).reserve(key(s), p);
            }
            match d.seeds.fetch(s, run.clone()) {
                Ok(()) => {
                    d.slots[s].run = Some((run.clone(), run.start));
                    d.slots[s].cancelling = false;
                }
                Err(e) => {
                    debug!("{short}: web seed {s}: {e}");
                    for p in run {
                        picker!(self).release_piece(key(s), p);
                    }
                    d.slots[s].dropped = true;
                }
            }
        }
    }

    /// An event from a web seed of generation `generation`.
    pub(crate) fn on_webseed(&mut self, generation: u64, event: WebSeedEvent) {
        if self
            .webseeds
            .as_ref()
            .is_none_or(|d| d.generation != generation)
        {
            return; // from seeds already stopped
        }
        let now = Instant::now();
        self.count_webseed_bytes(now);
        match event {
            WebSeedEvent::PieceWritten { seed, piece } => {
                if let Some(Some((_, next))) = self
                    .webseeds
                    .as_mut()
                    .and_then(|d| d.slots.get_mut(seed))
                    .map(|s| s.run.as_mut())
                {
                    *next = piece + 1;
                }
                let k = key(seed);
                for b in 0..picker!(self).blocks_in_piece(piece) {
                    let block = picker!(self).block_ref(piece, b);
                    self.on_block(k, block, true);
                }
            }
            WebSeedEvent::RunEnded {
                seed,
                unfinished,
                error,
                ready_at,
            } => {
                if let Some(e) = &error {
                    debug!("{}: web seed {seed}: {}", self.short(), chain(e));
                }
                let url = self.webseed_url(seed);
                if let Some(d) = self.webseeds.as_mut() {
                    if let Some(slot) = d.slots.get_mut(seed) {
                        let started = slot.run.as_ref().map(|(r, _)| r.start);
                        slot.run = None;
                        slot.cancelling = false;
                        slot.ready_at = ready_at;
                        // A run that wrote some bytes of this piece.
                        if !unfinished.is_empty() && started != Some(unfinished.start) {
                            d.partial.insert(unfinished.start, seed);
                        }
                    }
                }
                if let Some(e) = error {
                    info!("{}: web seed {url}: {e}; retrying later", self.short());
                }
                for p in unfinished {
                    picker!(self).release_piece(key(seed), p);
                }
                self.assign_webseeds(now);
            }
            WebSeedEvent::Dropped { seed, reason } => {
                let (url, reason) = (self.webseed_url(seed), chain(&reason));
                warn!("{}: web seed {url} dropped: {reason}", self.short());
                self.emit(TorrentEvent::WebSeedDropped { url, reason });
                if let Some(slot) = self.webseeds.as_mut().and_then(|d| d.slots.get_mut(seed)) {
                    slot.dropped = true;
                }
            }
        }
    }

    fn webseed_url(&self, seed: usize) -> String {
        self.webseeds
            .as_ref()
            .and_then(|d| d.seeds.url(seed))
            .unwrap_or("?")
            .to_string()
    }

    /// `piece` passed: a seed whose run still had it ahead was beaten to
    /// it by peers (endgame); cancel that run, whose rest goes back to the
    /// picker when it ends.
    pub(super) fn webseed_piece_passed(&mut self, piece: usize) {
        let Some(d) = self.webseeds.as_mut() else {
            return;
        };
        d.partial.remove(&piece);
        for (s, slot) in d.slots.iter_mut().enumerate() {
            if let Some((run, next)) = &slot.run {
                if !slot.cancelling && (*next..run.end).contains(&piece) {
                    debug!("web seed {s}: piece {piece} done by peers; cancelling its run");
                    slot.cancelling = true;
                    d.seeds.cancel(s);
                }
            }
        }
    }

    /// `piece` failed its hash: tells each seed that wrote some of it.
    /// True when a seed did (then no peer alone is to blame).
    pub(super) fn webseed_piece_failed(&mut self, piece: usize, contributors: &[PeerKey]) -> bool {
        let short = self.short();
        let Some(d) = self.webseeds.as_mut() else {
            return false;
        };
        let mut seeds: Vec<usize> = contributors.iter().filter_map(|&k| seed_of(k)).collect();
        seeds.extend(d.partial.remove(&piece));
        seeds.sort_unstable();
        seeds.dedup();
        for &s in &seeds {
            warn!(
                "{}: piece {piece} from web seed {} failed its hash",
                short,
                d.seeds.url(s).unwrap_or("?")
            );
            let _ = d.seeds.report_bad_piece(s, piece);
        }
        // Fetch it again (from a seed or a peer).
        self.assign_webseeds(Instant::now());
        !seeds.is_empty()
    }

    /// Counts bytes the seeds received since the last call.
    pub(super) fn count_webseed_bytes(&mut self, now: Instant) {
        let Some(d) = self.webseeds.as_mut() else {
            return;
        };
        let total = d.seeds.received();
        let n = total.saturating_sub(d.counted);
        d.counted = total;
        d.rate.add(n, now);
        if n > 0 {
            self.count_rate(super::idle::Direction::Down, n, now);
            self.transfer.downloaded.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// True while a seed works on a run (the tick keeps status and rates
    /// moving in a download with no peers).
    pub(super) fn webseeds_busy(&self) -> bool {
        self.webseeds
            .as_ref()
            .is_some_and(|d| d.slots.iter().any(|s| s.run.is_some()))
    }

    /// The earliest time an idle seed that backs off is ready again.
    pub(super) fn webseed_deadline(&self, now: Instant) -> Option<Instant> {
        let d = self.webseeds.as_ref()?;
        d.slots
            .iter()
            .filter(|s| !s.dropped && s.run.is_none() && s.ready_at > now)
            .map(|s| s.ready_at)
            .min()
    }

    pub(super) fn webseed_status(&self, now: Instant) -> WebSeedStatus {
        match &self.webseeds {
            Some(d) => WebSeedStatus {
                seeds: d.slots.iter().filter(|s| !s.dropped).count(),
                downloaded: self.webseed_bytes + d.counted,
                rate: d.rate.rate(now),
            },
            None => WebSeedStatus {
                seeds: 0,
                downloaded: self.webseed_bytes,
                rate: 0.0,
            },
        }
    }
}

/// The last `want` (or fewer) pieces of the longest stretch of pickable
/// pieces (the later stretch on a tie).
fn largest_gap_tail(picker: &PiecePicker, want: usize) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut start = None;
    let n = picker.piece_count();
    for p in 0..=n {
        let pickable = p < n && picker.is_pickable(p);
        match (pickable, start) {
            (true, None) => start = Some(p),
            (false, Some(s)) => {
                if best.as_ref().is_none_or(|b| p - s >= b.len()) {
                    best = Some(s..p);
                }
                start = None;
            }
            _ => {}
        }
    }
    let gap = best?;
    Some(gap.end.saturating_sub(want).max(gap.start)..gap.end)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picker::PickerConfig;

    #[test]
    fn runs_come_from_the_end_of_the_largest_gap() {
        let mut p = PiecePicker::new(20, 16384, 20 * 16384, PickerConfig::default(), 1);
        // Gaps: 0..5, 6..15, 16..20.
        assert!(p.reserve(PeerKey(1), 5));
        assert!(p.reserve(PeerKey(1), 15));
        assert_eq!(largest_gap_tail(&p, 4), Some(11..15));
        assert_eq!(largest_gap_tail(&p, 40), Some(6..15));
        for i in 6..15 {
            p.reserve(PeerKey(1), i);
        }
        // 0..5 is longer than 16..20.
        assert_eq!(largest_gap_tail(&p, 2), Some(3..5));
        for i in (0..5).chain(16..20) {
            p.reserve(PeerKey(1), i);
        }
        assert_eq!(largest_gap_tail(&p, 2), None);
    }
}
