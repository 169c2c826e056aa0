//! The daemon's torrent table: ids, records, the queue order, and the
//! operations the RPC methods perform on them through the [`Backend`].
//!
//! Integer ids are given out in order of addition and are not stable
//! across restarts (as in Transmission); hashes are. The table's lock is
//! held while statuses are read (cheap copies) and records change; a
//! torrent's removal, which waits for its threads, happens outside it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bittern_engine::{SeedGoal, TorrentOptions, TorrentState, TorrentStatus};
use bittern_wire::{InfoHash, Magnet, Metainfo};
use log::{info, warn};
use parking_lot::{Mutex, MutexGuard};

use crate::backend::{Backend, Source, Start};
use crate::settings::Settings;
use crate::store::{Record, Store};

mod data;
mod done;
mod live;
mod magnet;
mod queue;
mod rename;
use data::delete_local_data;
pub use rename::Rename;

/// How long a torrent counts as recently active (Transmission's value).
pub const RECENT: Duration = Duration::from_secs(60);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One torrent of the daemon.
pub struct Entry {
    /// Its RPC id for this run.
    pub id: i64,
    /// Its info hash.
    pub hash: InfoHash,
    /// What it is; `None` for a magnet link until its metadata is fetched.
    pub metainfo: Option<Arc<Metainfo>>,
    /// The magnet link it was added by, if it was.
    pub magnet: Option<Magnet>,
    /// What is persisted; counters are those of earlier engine runs.
    pub record: Record,
    /// Why the engine does not run it, if it refused.
    pub error: Option<String>,
    /// When it started this run (Unix seconds).
    pub start_date: i64,
    /// Last time something happened to it (for `recently-active`).
    pub touched: Instant,
    /// The record changed since it was saved.
    pub dirty: bool,
    /// Started by the user but waiting in the queue (paused in the engine).
    pub queued: bool,
    /// Started with `torrent-start-now`: runs whatever the queue says.
    pub bypass_queue: bool,
    /// Last time it moved data, or started (for the stall rule and the
    /// idle seeding limit).
    pub last_active: Instant,
    /// Its completion was handled (the done script ran); cleared when it
    /// is seen incomplete again.
    pub done_handled: bool,
}

impl Entry {
    /// Indices into `metainfo.info.files` of the files shown to clients
    /// (padding files hidden).
    pub fn visible_files(&self) -> impl Iterator<Item = usize> + '_ {
        self.metainfo
            .iter()
            .flat_map(|m| m.info.files.iter())
            .enumerate()
            .filter(|(_, f)| !f.padding)
            .map(|(i, _)| i)
    }

    /// The record with this run's counters from `status` folded in.
    pub fn folded(&self, status: Option<&TorrentStatus>) -> Record {
        self.folded_into(self.record.clone(), status)
    }

    /// `record` with this run's counters from `status` folded in.
    fn folded_into(&self, mut r: Record, status: Option<&TorrentStatus>) -> Record {
        if let Some(s) = status {
            r.downloaded_ever += s.downloaded;
            r.uploaded_ever += s.uploaded;
            // failed pieces and v2 blocks that failed their leaf on arrival
            r.corrupt_ever += s.corrupt;
        }
        r
    }

    /// Its name: the metainfo's, else the magnet link's `dn`, else the
    /// info hash in hex (as Transmission shows a magnet without metadata).
    pub fn name(&self) -> String {
        match (&self.metainfo, &self.magnet) {
            (Some(m), _) => m.info.name.clone(),
            (
                None,
                Some(Magnet {
                    display_name: Some(dn),
                    ..
                }),
            ) => dn.clone(),
            _ => self.hash.to_hex(),
        }
    }
}

/// How `ids` selected torrents.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// No `ids`: every torrent.
    All,
    /// `"recently-active"`.
    RecentlyActive,
    /// Ids and hashes.
    Some(Vec<Sel>),
}

/// One element of `ids`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sel {
    /// An integer id.
    Id(i64),
    /// An info hash (either case).
    Hash(InfoHash),
    /// Something that names no torrent.
    Nothing,
}

/// The table behind the lock.
pub struct Inner {
    /// Torrents in queue order.
    pub entries: Vec<Entry>,
    /// Ids removed, with when (for `recently-active`).
    pub removed: Vec<(i64, Instant)>,
    /// Session settings.
    pub settings: Settings,
    next_id: i64,
    /// Torrents added this run.
    pub files_added: u64,
    /// What the alternative-speed schedule last said (`None`: not yet, or
    /// the schedule changed): it switches the limits only when this flips,
    /// so a manual switch holds until the next boundary.
    pub alt_scheduled: Option<bool>,
}

impl Inner {
    /// Forgets removals older than [`RECENT`], and gives back the room of
    /// a bulk removal once most of it is forgotten (an emptied daemon
    /// otherwise keeps 24 bytes for every torrent it ever removed at once).
    fn forget_removed(&mut self) {
        let now = Instant::now();
        self.removed
            .retain(|(_, t)| now.duration_since(*t) < RECENT);
        if self.removed.capacity() > 32 && self.removed.len() * 4 <= self.removed.capacity() {
            let keep = self.removed.len() * 2;
            self.removed.shrink_to(keep);
        }
    }

    /// Indices of the entries `ids` selects, in table order.
    pub fn select(&self, ids: &Ids) -> Vec<usize> {
        let now = Instant::now();
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| match ids {
                Ids::All => true,
                Ids::RecentlyActive => now.duration_since(e.touched) < RECENT,
                Ids::Some(sels) => sels.iter().any(|s| match s {
                    Sel::Id(id) => *id == e.id,
                    Sel::Hash(h) => *h == e.hash,
                    Sel::Nothing => false,
                }),
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Renumbers queue positions after the order of `entries` changed.
    fn renumber_queue(&mut self) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let pos = i64::try_from(i).unwrap_or(i64::MAX);
            if e.record.queue_position != pos {
                e.record.queue_position = pos;
                e.dirty = true;
            }
        }
    }
}

/// The outcome of `torrent-add`.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    /// `false`: the torrent was already there (`torrent-duplicate`).
    pub new: bool,
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its info hash.
    pub hash: InfoHash,
}

/// What a torrent is added from.
#[derive(Debug, Clone)]
pub enum AddSource {
    /// A metainfo.
    Metainfo {
        /// The metainfo bytes.
        bytes: Vec<u8>,
        /// Parsed.
        metainfo: Box<Metainfo>,
    },
    /// A magnet link (with a v1 info hash).
    Magnet(Magnet),
}

/// What `torrent-add` asks for, once its arguments are checked.
#[derive(Debug, Clone)]
pub struct AddSpec {
    /// The metainfo or magnet link.
    pub source: AddSource,
    /// Where the data goes (absolute).
    pub save_dir: PathBuf,
    /// Start stopped.
    pub paused: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// Per visible file; empty: all.
    pub wanted: Vec<bool>,
}

/// Queue moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// To the front.
    Top,
    /// One up.
    Up,
    /// One down.
    Down,
    /// To the end.
    Bottom,
}

/// The torrents of a daemon and their store.
pub struct Torrents<B: Backend> {
    backend: B,
    store: Store,
    inner: Mutex<Inner>,
    started: Instant,
}

impl<B: Backend> Torrents<B> {
    /// Loads the settings and every saved torrent from `store` and starts
    /// them in `backend`, in queue order. A torrent the engine refuses is
    /// kept with an error.
    ///
    /// # Errors
    /// The settings or the torrents folder cannot be read.
    pub fn open(backend: B, store: Store) -> Result<Torrents<B>, crate::store::StoreError> {
        let mut settings = store.load_settings()?;
        settings.session_count += 1;
        if let Err(e) = store.save_settings(&settings) {
            warn!("cannot save settings: {e}");
        }
        let saved = store.load_all()?;
        let t = Torrents {
            backend,
            store,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                removed: Vec::new(),
                settings,
                next_id: 1,
                files_added: 0,
                alt_scheduled: None,
            }),
            started: Instant::now(),
        };
        {
            let mut inner = t.inner.lock();
            let queues_on =
                inner.settings.download_queue_enabled || inner.settings.seed_queue_enabled;
            for (mut record, bytes) in saved {
                let settled = data::settle(&mut record);
                let record_paused = record.paused;
                let Some((hash, metainfo, magnet)) = magnet::restore(&record, bytes.as_deref())
                else {
                    continue;
                };
                let id = inner.next_id;
                inner.next_id += 1;
                let mut entry = Entry {
                    id,
                    hash,
                    metainfo,
                    magnet,
                    record,
                    error: None,
                    start_date: 0,
                    touched: Instant::now(),
                    dirty: settled,
                    // Waiting until the queue has looked at it after its
                    // check, so that a restart does not start them all.
                    queued: !record_paused && queues_on,
                    bypass_queue: false,
                    last_active: Instant::now(),
                    done_handled: false,
                };
                t.launch(&inner.settings, &mut entry);
                inner.entries.push(entry);
            }
            inner.renumber_queue();
            t.schedule_queue(&mut inner);
            info!("{} torrents restored", inner.entries.len());
        }
        Ok(t)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// When this run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Locks the table.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The engine options of an entry.
    fn options(&self, settings: &Settings, e: &Entry) -> TorrentOptions {
        let files = e.metainfo.as_ref().map_or(&[][..], |m| &m.info.files[..]);
        let wanted_files = if e.record.wanted.is_empty() || files.is_empty() {
            Vec::new()
        } else {
            let mut visible = e.record.wanted.iter();
            files
                .iter()
                .map(|f| !f.padding && visible.next().copied().unwrap_or(true))
                .collect()
        };
        let (download_limit, upload_limit) = crate::limits::torrent_limits(settings, &e.record);
        TorrentOptions {
            wanted_files,
            // The daemon stops torrents at their ratio and idle limits
            // itself (see `done`), with counters kept across restarts.
            seed_goal: SeedGoal::Forever,
            upload_limit,
            download_limit,
            resume_file: Some(self.store.resume_path(&e.hash.to_hex())),
            paused: e.record.paused || e.queued,
            ..TorrentOptions::default()
        }
    }

    /// Starts an entry in the engine (it checks its data first).
    fn launch(&self, settings: &Settings, e: &mut Entry) {
        let source = match (&e.metainfo, &e.magnet) {
            (Some(m), _) => Source::Metainfo((**m).clone()),
            (None, Some(link)) => Source::Magnet(link.clone()),
            (None, None) => {
                e.error = Some("no metainfo and no magnet link".into());
                return;
            }
        };
        let start = Start {
            source,
            save_dir: e.record.save_dir.clone(),
            options: self.options(settings, e),
        };
        e.start_date = unix_now();
        e.touched = Instant::now();
        let limits = (start.options.download_limit, start.options.upload_limit);
        e.error = match self.backend.start(start) {
            Ok(()) if !e.record.honors_session_limits => {
                // Not among the engine's start options.
                let (down, up) = limits;
                let _ = self.backend.set_limits(e.hash, down, up, false);
                None
            }
            Ok(()) => None,
            Err(err) => {
                warn!("{}: cannot start: {err}", e.name());
                Some(err.to_string())
            }
        };
    }

    /// Restarts an entry with its current record (new options), folding
    /// the finished run's counters into the record.
    fn relaunch(&self, settings: &Settings, e: &mut Entry) {
        let status = self.backend.status(e.hash);
        e.record = e.folded(status.as_ref());
        self.backend.remove(e.hash);
        self.launch(settings, e);
        e.dirty = true;
    }

    /// Adds a torrent, or reports the one already there.
    ///
    /// # Errors
    /// The store cannot save it (nothing is added then).
    pub fn add(&self, spec: AddSpec) -> Result<Added, String> {
        let mut inner = self.inner.lock();
        let (hash, top, visible, metainfo, magnet, bytes) = match spec.source {
            AddSource::Metainfo { bytes, metainfo } => {
                let visible = metainfo.info.files.iter().filter(|f| !f.padding).count();
                let top = Some(metainfo.info.name.clone());
                (
                    metainfo.info_hash,
                    top,
                    visible,
                    Some(*metainfo),
                    None,
                    Some(bytes),
                )
            }
            AddSource::Magnet(link) => {
                if !crate::backend::has_hash(&link) {
                    return Err("the magnet link has no info hash (btih or btmh)".into());
                }
                // v1, or a v2-only link's truncated v2 hash (BEP 52)
                let hash = link.swarm_hash();
                (hash, None, 0, None, Some(link), None)
            }
        };
        if let Some(e) = inner.entries.iter().find(|e| e.hash == hash) {
            return Ok(Added {
                new: false,
                id: e.id,
                name: e.name(),
                hash,
            });
        }
        let now = unix_now();
        // With an incomplete dir, data not already in place downloads there
        // (a magnet's name is not known yet: it goes there too).
        let s = &inner.settings;
        let (save_dir, final_dir) = if s.incomplete_dir_enabled
            && !s.incomplete_dir.is_empty()
            && top
                .as_ref()
                .is_none_or(|t| std::fs::symlink_metadata(spec.save_dir.join(t)).is_err())
        {
            let dir = PathBuf::from(&s.incomplete_dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            (dir, Some(spec.save_dir))
        } else {
            (spec.save_dir, None)
        };
        let record = Record {
            info_hash: hash.to_hex(),
            save_dir,
            final_dir,
            paused: spec.paused,
            labels: spec.labels,
            wanted: if spec.wanted.len() == visible {
                spec.wanted
            } else {
                Vec::new()
            },
            queue_position: i64::try_from(inner.entries.len()).unwrap_or(i64::MAX),
            added_date: now,
            edit_date: now,
            peer_limit: i64::try_from(inner.settings.peer_limit_per_torrent).unwrap_or(50),
            magnet: magnet.as_ref().map(Magnet::to_uri),
            ..Record::default()
        };
        self.store
            .add(&record, bytes.as_deref())
            .map_err(|e| e.to_string())?;
        let id = inner.next_id;
        inner.next_id += 1;
        inner.files_added += 1;
        let mut entry = Entry {
            id,
            hash,
            metainfo: metainfo.map(Arc::new),
            magnet,
            record,
            error: None,
            start_date: 0,
            touched: Instant::now(),
            dirty: false,
            queued: !spec.paused && !self.download_slot_free(&inner),
            bypass_queue: false,
            last_active: Instant::now(),
            done_handled: false,
        };
        let settings = inner.settings.clone();
        self.launch(&settings, &mut entry);
        let name = entry.name();
        info!("added {name} as {id}");
        inner.entries.push(entry);
        Ok(Added {
            new: true,
            id,
            name,
            hash,
        })
    }

    /// Starts (resumes) the selected torrents: they join the queue, and
    /// run when it has room for them; with `now` they run at once
    /// (`torrent-start-now`).
    ///
    /// # Errors
    /// The store cannot be written: the torrents run, but would be found
    /// stopped after a crash.
    pub fn start(&self, ids: &Ids, now: bool) -> Result<(), String> {
        let mut inner = self.inner.lock();
        for i in inner.select(ids) {
            let e = &mut inner.entries[i];
            let ended = self
                .backend
                .status(e.hash)
                .is_none_or(|s| s.state == TorrentState::Stopped);
            if e.record.paused || e.error.is_some() || ended {
                // Waiting: the queue starts it (or relaunches one ended).
                e.queued = true;
                e.error = None;
            }
            e.record.paused = false;
            e.record.finished = false;
            e.bypass_queue |= now;
            e.dirty = true;
            e.touched = Instant::now();
        }
        self.schedule_queue(&mut inner);
        self.flush(&mut inner)
    }

    /// Stops (pauses) the selected torrents.
    ///
    /// # Errors
    /// The store cannot be written: the torrents stop, but would run
    /// again after a crash.
    pub fn stop(&self, ids: &Ids) -> Result<(), String> {
        let mut inner = self.inner.lock();
        for i in inner.select(ids) {
            let e = &mut inner.entries[i];
            e.record.paused = true;
            e.queued = false;
            e.bypass_queue = false;
            e.dirty = true;
            e.touched = Instant::now();
            // A torrent that does not run is stopped already.
            let _ = self.backend.pause(e.hash);
        }
        self.schedule_queue(&mut inner);
        self.flush(&mut inner)
    }

    /// Rechecks the selected torrents' data from scratch: their resume
    /// state is dropped and they start again.
    ///
    /// # Errors
    /// The store cannot be written.
    pub fn verify(&self, ids: &Ids) -> Result<(), String> {
        let mut inner = self.inner.lock();
        let settings = inner.settings.clone();
        for i in inner.select(ids) {
            let e = &mut inner.entries[i];
            let status = self.backend.status(e.hash);
            e.record = e.folded(status.as_ref());
            self.backend.remove(e.hash);
            let resume = self.store.resume_path(&e.hash.to_hex());
            if let Err(err) = std::fs::remove_file(&resume) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    warn!("cannot drop {}: {err}", resume.display());
                }
            }
            self.launch(&settings, e);
            e.dirty = true;
        }
        self.flush(&mut inner)
    }

    /// Removes the selected torrents, and their data with `delete_data`.
    ///
    /// # Errors
    /// A record cannot be deleted from the store (that torrent stays).
    pub fn remove(&self, ids: &Ids, delete_data: bool) -> Result<(), String> {
        let taken: Vec<Entry> = {
            let mut inner = self.inner.lock();
            // A magnet whose metadata came since the last tick: its data
            // is known (for `delete_data`).
            self.adopt_metadata(&mut inner);
            let picked = inner.select(ids);
            let mut taken = Vec::new();
            for i in picked.into_iter().rev() {
                let hex = inner.entries[i].hash.to_hex();
                self.store.remove(&hex).map_err(|e| e.to_string())?;
                let e = inner.entries.remove(i);
                inner.removed.push((e.id, Instant::now()));
                taken.push(e);
            }
            inner.forget_removed();
            // The list's room for thousands of torrents is given back once
            // most are gone (an entry is a few hundred bytes).
            if inner.entries.capacity() > 32 && inner.entries.len() * 4 <= inner.entries.capacity()
            {
                let keep = inner.entries.len() * 2;
                inner.entries.shrink_to(keep);
            }
            inner.renumber_queue();
            self.schedule_queue(&mut inner);
            // The records are gone from the store; the others' new queue
            // positions are saved at the next tick if not now.
            let _ = self.flush(&mut inner);
            taken
        };
        for e in taken {
            self.backend.remove(e.hash);
            info!("removed {} ({})", e.name(), e.id);
            // Nothing of a magnet without metadata is on disk.
            if let (Some(m), true) = (&e.metainfo, delete_data) {
                delete_local_data(m, &e.record.save_dir);
            }
        }
        Ok(())
    }

    /// Moves the selected torrents in the queue.
    ///
    /// # Errors
    /// The store cannot be written.
    pub fn queue_move(&self, ids: &Ids, how: Move) -> Result<(), String> {
        let mut inner = self.inner.lock();
        let picked = inner.select(ids);
        let n = inner.entries.len();
        match how {
            Move::Top | Move::Bottom => {
                let mut chosen = Vec::new();
                for &i in picked.iter().rev() {
                    chosen.push(inner.entries.remove(i));
                }
                chosen.reverse();
                if how == Move::Top {
                    inner.entries.splice(0..0, chosen);
                } else {
                    inner.entries.extend(chosen);
                }
            }
            Move::Up => {
                for &i in &picked {
                    if i > 0 && !picked.contains(&(i - 1)) {
                        inner.entries.swap(i - 1, i);
                    }
                }
            }
            Move::Down => {
                for &i in picked.iter().rev() {
                    if i + 1 < n && !picked.contains(&(i + 1)) {
                        inner.entries.swap(i, i + 1);
                    }
                }
            }
        }
        inner.renumber_queue();
        self.schedule_queue(&mut inner);
        self.flush(&mut inner)
    }

    /// Applies new records to the selected torrents: `change` edits each
    /// record and says whether the engine must restart the torrent.
    ///
    /// Each changed record is saved before it takes effect: a change the
    /// store cannot hold (a full disk) is refused, not answered with
    /// success and lost at the next crash.
    ///
    /// # Errors
    /// The message of `change`'s first error, or the store's (nothing
    /// after it changes).
    pub fn update(
        &self,
        ids: &Ids,
        mut change: impl FnMut(&Entry, &mut Record) -> Result<bool, String>,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock();
        let settings = inner.settings.clone();
        for i in inner.select(ids) {
            let e = &mut inner.entries[i];
            let mut r = e.record.clone();
            let restart = change(e, &mut r)?;
            if r != e.record {
                r.edit_date = unix_now();
                let status = self.backend.status(e.hash);
                let saved = e.folded_into(r.clone(), status.as_ref());
                self.store
                    .save(&saved)
                    .map_err(|err| format!("cannot save {}: {err}", e.name()))?;
                e.record = r;
                e.dirty = false;
                e.touched = Instant::now();
            }
            if restart {
                self.relaunch(&settings, e);
            }
        }
        self.flush(&mut inner)
    }

    /// Sets a torrent's queue position (moving the others).
    ///
    /// # Errors
    /// The store cannot be written.
    pub fn set_queue_position(&self, ids: &Ids, pos: i64) -> Result<(), String> {
        let mut inner = self.inner.lock();
        for i in inner.select(ids).into_iter().rev() {
            let e = inner.entries.remove(i);
            let at = usize::try_from(pos.max(0))
                .unwrap_or(0)
                .min(inner.entries.len());
            inner.entries.insert(at, e);
        }
        inner.renumber_queue();
        self.schedule_queue(&mut inner);
        self.flush(&mut inner)
    }

    /// Housekeeping, called every `dt`: time spent downloading and
    /// seeding, activity, completion dates; saves what changed when `save`.
    pub fn tick(&self, dt: Duration, save: bool) {
        let mut inner = self.inner.lock();
        inner.forget_removed();
        self.follow_schedule(&mut inner);
        self.adopt_metadata(&mut inner);
        self.note_activity(&mut inner);
        self.schedule_queue(&mut inner);
        let now = unix_now();
        let mut completed = Vec::new();
        for (i, e) in inner.entries.iter_mut().enumerate() {
            let Some(s) = self.backend.status(e.hash) else {
                continue;
            };
            match s.state {
                TorrentState::Downloading => e.record.seconds_downloading += dt.as_secs(),
                TorrentState::Seeding => e.record.seconds_seeding += dt.as_secs(),
                _ => {}
            }
            if s.download_rate >= 1.0 || s.upload_rate >= 1.0 || s.state == TorrentState::Checking {
                e.record.activity_date = now;
                e.touched = Instant::now();
                e.dirty = true;
            }
            let complete = s.wanted_bytes > 0
                && s.have_bytes == s.wanted_bytes
                && s.state != TorrentState::Checking;
            if complete && e.record.done_date == 0 {
                e.record.done_date = now;
                e.dirty = true;
                e.touched = Instant::now();
            }
            let checked = s.state != TorrentState::Checking && s.wanted_bytes > 0;
            if checked && !complete {
                e.done_handled = false;
            }
            // Completed by downloading in this engine run (however fast).
            let done = complete && s.downloaded > 0 && !e.done_handled;
            if done || (complete && e.record.final_dir.is_some()) {
                completed.push((i, done));
            }
        }
        for (i, done) in completed {
            self.on_complete(&mut inner, i, done);
        }
        self.enforce_seed_limits(&mut inner);
        if save {
            self.save_dirty(&mut inner, false);
        }
    }

    /// Saves the records a change made dirty, at once: an RPC change
    /// survives a SIGKILL right after its reply. A record that cannot be
    /// saved stays dirty (tried again at the next tick).
    ///
    /// # Errors
    /// The first record that could not be saved, for the RPC's reply.
    fn flush(&self, inner: &mut Inner) -> Result<(), String> {
        let mut result = Ok(());
        for e in &mut inner.entries {
            if e.dirty {
                let r = e.folded(self.backend.status(e.hash).as_ref());
                match self.store.save(&r) {
                    Ok(()) => e.dirty = false,
                    Err(err) => {
                        warn!("cannot save {}: {err}", e.name());
                        if result.is_ok() {
                            result = Err(format!("cannot save {}: {err}", e.name()));
                        }
                    }
                }
            }
        }
        result
    }

    /// Saves the records that changed (all with `all`) and the settings.
    fn save_dirty(&self, inner: &mut Inner, all: bool) {
        if all {
            for e in &mut inner.entries {
                e.dirty = true;
            }
        }
        // Failures are logged; the records stay dirty.
        let _ = self.flush(inner);
        if let Err(err) = self.store.save_settings(&inner.settings) {
            warn!("cannot save settings: {err}");
        }
    }

    /// Stops every torrent gracefully and saves everything: records with
    /// their final counters, settings with this run's totals.
    pub fn shutdown(&self) {
        self.backend.shutdown();
        let mut inner = self.inner.lock();
        let (mut down, mut up) = (0, 0);
        for e in &inner.entries {
            if let Some(s) = self.backend.status(e.hash) {
                down += s.downloaded;
                up += s.uploaded;
            }
        }
        let added = inner.files_added;
        let s = &mut inner.settings;
        s.cumulative_downloaded_bytes += down;
        s.cumulative_uploaded_bytes += up;
        s.cumulative_seconds_active += self.started.elapsed().as_secs();
        s.cumulative_files_added += added;
        inner.files_added = 0;
        self.save_dirty(&mut inner, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_past_recent_are_forgotten_with_their_room() {
        let mut inner = Inner {
            entries: Vec::new(),
            removed: Vec::new(),
            settings: Settings::default(),
            next_id: 1,
            files_added: 0,
            alt_scheduled: None,
        };
        let now = Instant::now();
        let old = now
            .checked_sub(RECENT + Duration::from_secs(1))
            .unwrap_or(now);
        inner.removed.extend((0..2000).map(|id| (id, old)));
        inner.removed.push((7000, now));
        inner.forget_removed();
        if old < now {
            assert_eq!(inner.removed, vec![(7000, now)]);
            assert!(
                inner.removed.capacity() <= 32,
                "{}",
                inner.removed.capacity()
            );
        }
        // Recent ones stay, room and all.
        inner.removed.extend((0..100).map(|id| (id, now)));
        let cap = inner.removed.capacity();
        inner.forget_removed();
        assert_eq!((inner.removed.len(), inner.removed.capacity()), (101, cap));
    }
}
