//! One torrent's state: the PiecePicker, the Choker and the peer table,
//! run by the session's controller thread (`central`) one event at a time:
//! peer events, commands, job results, peer sources and its timers. It
//! never blocks on a peer (commands go out with `try_send`; a full queue
//! closes that peer), a disk or a tracker (that work runs on other threads
//! and reports back).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_storage::{FileSpec, Layout, Storage};
use bittern_tracker::TorrentKey;
use bittern_wire::{Bitfield, BlockRef, Extension, InfoHash, Metainfo, PeerId};
use crossbeam_channel::Sender;
use log::{debug, info, warn};

mod blame;
mod candidates;
mod idle;
mod lifecycle;
pub(crate) mod meta;
mod peers;
mod persist;
mod pex;
mod pieces;
mod startup;
mod superseed;
mod timers;
mod webseeds;

use candidates::CandidateSource;
pub(crate) use persist::PersistDone;

use super::central::{Ctl, Done, Links, PeerSource};
use super::check;
use super::{Published, TorrentCommand, TorrentHandle, TorrentId};
use crate::choker::{Choker, ChokerConfig};
use crate::config::{SeedGoal, TorrentOptions};
use crate::error::{Error, TorrentError};
use crate::hashpool::VerifyQueue;
use crate::inline_hash::InlineHashes;
use crate::peer::{Origin, PeerCommand, PeerEvent, PeerMsg, PeerStats};
use crate::picker::{BlockReceived, PeerKey, PiecePicker, BLOCK_SIZE};
use crate::rate::RateMeasure;
use crate::session::{Registry, SessionShared};
use crate::shared::{BlockClaims, HaveSet};
use crate::status::{Events, TorrentEvent, TorrentState, TorrentStatus, EVENT_QUEUE};

/// How long a verification job holding fewer completed pieces than it
/// hashes side by side waits for more (pieces of a fast download complete
/// far more often; a slow one loses at most this much per piece).
const GROUP_WAIT: Duration = Duration::from_millis(2);
/// How long a verified piece may wait to be announced, so that HAVEs go
/// out in batches (one write per peer, one read on the other side) rather
/// than one message, wakeup and syscall per piece and peer.
const HAVE_DELAY: Duration = Duration::from_millis(20);
/// Queue depth of one peer's command channel.
const PEER_COMMAND_QUEUE: usize = 1024;
/// Requests in flight to one peer: never fewer, never more.
const MIN_PIPELINE: usize = 64;
const MAX_PIPELINE: usize = 1000;
/// Seconds of data to keep requested from a peer (libtorrent uses 3 s).
const PIPELINE_SECONDS: f64 = 3.0;
/// Request queue we assume for a peer that did not say (`reqq`).
const DEFAULT_REQQ: usize = 250;
/// Requests in flight to a snubbed peer that still answers (one whose
/// request went overdue lately): a quarter of its pipeline, at least this.
const SNUBBED_PIPELINE: usize = 4;
/// The rate below which a peer's queue is not assumed to move slower when
/// its requests' deadlines are set (1 KiB/s: 16 s a block). Slow peers are
/// common; a stalled one is handled by the snub instead (see
/// `expire_requests`).
const DEADLINE_MIN_RATE: f64 = 1024.0;
/// How long a piece a peer refused twice while unchoking us is treated as
/// one it lacks (it lost the data, or will not serve it), before we ask
/// again.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(60);
/// Pieces remembered per peer as refused once.
const MAX_REFUSED_ONCE: usize = 4096;
/// Before retrying an address that failed.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How soon an outgoing peer whose working connection broke is dialled
/// again; each failed attempt doubles the wait, up to [`REDIAL_TRIES`].
const REDIAL_AFTER: Duration = Duration::from_secs(3);
/// Attempts to reach a lost peer again before waiting for a tracker to
/// hand it out (3 + 6 + 12 + 24 + 48 s: a restart has about 90 s).
const REDIAL_TRIES: u32 = 5;

/// Everything needed to start a torrent.
pub(crate) struct ControllerSetup {
    pub id: TorrentId,
    pub metainfo: Metainfo,
    pub save_dir: PathBuf,
    pub options: TorrentOptions,
    pub session: Arc<SessionShared>,
    pub registry: Registry,
    pub commands: Sender<Ctl>,
    pub links: Links,
    /// The status and event queue of a handle that already exists (a
    /// torrent started from a magnet link, whose metadata just arrived):
    /// the handle stays the same for the torrent's whole life.
    pub reuse: Option<(Arc<Published>, Arc<Events>)>,
}

/// Counters the session announcer reads from its workers.
#[derive(Default)]
pub(crate) struct Transfer {
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    pub left: AtomicU64,
    /// Payload bytes peer readers wrote to storage.
    pub written: AtomicU64,
}

/// Builds the storage and the torrent's state (for the controller thread)
/// and its handle. Touches no file.
pub(crate) fn build_controller(
    setup: ControllerSetup,
) -> Result<(Controller, TorrentHandle), Error> {
    let ControllerSetup {
        id,
        metainfo,
        save_dir,
        options,
        session,
        registry,
        commands,
        links,
        reuse,
    } = setup;
    let info = &metainfo.info;
    let info_hash = metainfo.info_hash;
    let files: Vec<FileSpec> = info
        .files
        .iter()
        .map(|f| FileSpec {
            path: f.relative_path(),
            length: f.length,
            padding: f.padding,
        })
        .collect();
    let layout = crate::v2::layout(&metainfo, files)?;
    let root = if info.multi_file {
        save_dir.join(&info.name)
    } else {
        save_dir.clone()
    };
    let storage = Arc::new(
        Storage::new(
            layout,
            root,
            session.files.clone(),
            session.config.storage_backend,
        )?
        .with_hash_source(session.config.hash_source),
    );
    // The default place is kept as the session's shared folder path; the
    // file name comes from the info hash when needed (see `resume_file`).
    let resume_dir = session.resume_dir(save_dir.join(".bittern"));

    let status = TorrentStatus::initial(
        info.name.clone(),
        TorrentState::Checking,
        info.piece_count(),
    );
    let (published, events) = match reuse {
        // The handle that exists already holds the same queue.
        Some((published, events)) => {
            *published.status.lock() = status;
            (published, events)
        }
        // Allocates only for events that wait (a channel would hold a
        // block of slots, and its own counters, for every torrent).
        None => (
            Published::new(status, &options),
            Arc::new(Events::new(EVENT_QUEUE)),
        ),
    };
    let source = PeerSource::new(id, links.sources.clone());
    let weak_session = Arc::downgrade(&session);
    let ctl = Controller::new(Parts {
        id,
        metainfo,
        storage,
        options,
        session,
        resume_dir,
        published: published.clone(),
        events: Arc::clone(&events),
        links,
    });
    let handle = TorrentHandle {
        info_hash,
        id,
        commands,
        source,
        published,
        events,
        registry,
        session: weak_session,
        // The session lists the handle it returns (see `Session::list`).
        listed: std::sync::Weak::new(),
    };
    Ok((ctl, handle))
}

/// What the controller knows of one connection.
struct Peer {
    addr: SocketAddr,
    /// The stream is RC4-encrypted (MSE).
    encrypted: bool,
    /// A v2 connection (BEP 52): it may be sent hash requests.
    v2: bool,
    commands: Sender<PeerCommand>,
    /// The connection's socket, to cut it (see `close`). Dropping the peer
    /// (the controller exiting) cuts it too.
    socket: Arc<crate::peer::SocketSlot>,
    /// When a closed connection that has not ended is cut.
    cut_at: Option<Instant>,
    stats: Arc<PeerStats>,
    thread: Option<JoinHandle<()>>,
    ready: bool,
    incoming: bool,
    /// Over uTP rather than TCP.
    utp: bool,
    peer_id: Option<PeerId>,
    bits: Option<Bitfield>,
    fast: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    allowed_fast: Vec<u32>,
    /// Their `reqq`: requests they said they queue.
    reqq: usize,
    /// Requests of ours that went overdue, and the last time one did.
    drops: u64,
    last_drop: Option<Instant>,
    /// Pieces they refused (REJECT while unchoking us) once.
    refused_once: HashSet<u32>,
    /// Pieces they refused twice, taken out of `bits` until then.
    refused: Vec<(u32, Instant)>,
    client: Option<String>,
    /// Their last extension handshake (BEP 10): the extensions they speak,
    /// their listen port `p`, `upload_only`.
    ext: Option<Box<bittern_wire::ExtensionHandshake>>,
    /// Peer exchange with it, once it said it speaks `ut_pex` (never on
    /// a private torrent).
    pex: Option<Box<pex::PeerPex>>,
    connected_at: Instant,
    last_block: Instant,
    down: RateMeasure,
    up: RateMeasure,
    seen_down: u64,
    seen_up: u64,
    closing: bool,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A no-op when the thread has ended (it cut the slot itself).
        self.socket.cut();
    }
}

impl Peer {
    /// Silent: we wait for blocks and none came for `timeout` (mainline's
    /// snub), or dropping: a request went overdue within `timeout`.
    fn snubbed(&self, now: Instant, timeout: Duration, outstanding: usize) -> bool {
        self.silent(now, timeout, outstanding) || self.dropping(now, timeout)
    }

    fn silent(&self, now: Instant, timeout: Duration, outstanding: usize) -> bool {
        outstanding > 0 && !self.peer_choking && now.duration_since(self.last_block) > timeout
    }

    fn dropping(&self, now: Instant, timeout: Duration) -> bool {
        self.last_drop
            .is_some_and(|t| now.duration_since(t) <= timeout)
    }

    /// Most requests we keep in flight to this peer: one fewer than its
    /// `reqq`. Transmission 3.00 advertises 512 but refuses a request
    /// that would make its queue 512 long (`pendingReqsToClient + 1 >=
    /// REQQ`), so exactly `reqq` outstanding gets one REJECT in a full
    /// pipe.
    fn max_outstanding(&self) -> usize {
        self.reqq.saturating_sub(1).clamp(1, MAX_PIPELINE)
    }
}

pub(crate) struct Controller {
    id: TorrentId,
    /// The deadline the controller's timer heap holds for this torrent.
    pub(super) scheduled: Option<Instant>,
    links: Links,
    info_hash: InfoHash,
    /// What is kept of the metainfo (see `meta`).
    meta: meta::TorrentMeta,
    /// The info dictionary as hashed, served over `ut_metadata`.
    info_bytes: Arc<[u8]>,
    storage: Arc<Storage>,
    options: TorrentOptions,
    session: Arc<SessionShared>,
    /// The folder of the resume state (shared by the session's torrents
    /// there), unless `options.resume_file` names the file.
    resume_dir: Arc<std::path::Path>,
    published: Arc<Published>,
    events: Arc<Events>,

    /// Built when needed, dropped when idle (see `idle`).
    picker: idle::LazyPicker,
    /// Built by the first rechoke and dropped when the last peer leaves:
    /// an idle torrent holds none.
    choker: Option<Box<Choker>>,
    have: Arc<HaveSet>,
    claims: Arc<BlockClaims>,
    /// Inline piece hashes, made with the first peer thread (they feed
    /// it); none before.
    hashes: Option<Arc<InlineHashes>>,
    wanted: Vec<bool>,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    /// The session IP filter's generation our peers were last checked
    /// against (see `drop_blocked`).
    filter_seen: u64,
    verifying: usize,
    /// Completed pieces waiting for a verification job (made by the
    /// first).
    verify_queue: Option<Arc<VerifyQueue>>,
    /// Verified pieces not yet announced, and when they must be.
    pending_haves: Vec<u32>,
    haves_due: Option<Instant>,

    /// Candidates, bans and blame: built by the first address or peer,
    /// dropped when empty again (see `idle`).
    swarm: Option<Box<idle::Swarm>>,

    /// This torrent's key in the session announcer while it is added.
    announcer: Option<TorrentKey>,
    /// A hybrid's second key there, for its truncated v2 hash (BEP 52:
    /// announced under both hashes, as libtorrent does, so peers that know
    /// either find it).
    announcer_v2: Option<TorrentKey>,
    /// On the session DHT's schedule (public torrents while running).
    on_dht: bool,
    transfer: Arc<Transfer>,
    /// Download and upload rates, from the first byte moved until the
    /// torrent is idle again (see `idle`).
    rates: Option<Box<idle::Rates>>,

    state: TorrentState,
    completed_at: Option<Instant>,
    /// The file preparation thread and its stop flag (see `start_prepare`).
    prepare: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    hash_failures: u64,
    /// Payload bytes thrown away as corrupt (`TorrentStatus::corrupt`).
    corrupt: u64,
    /// The startup check's cancel flag, while it runs.
    check_cancel: Option<Arc<AtomicBool>>,
    /// Commands that came during the startup check, run after it.
    deferred: Vec<TorrentCommand>,
    /// A stop in progress (see `lifecycle`).
    stopping: Option<Box<lifecycle::Stopping>>,
    /// The torrent has ended; the controller drops it.
    finished: bool,
    /// When the tick last ran, and until when it runs without peers (so
    /// that rates published after the last peer left decay to zero).
    last_tick: Instant,
    quiet_until: Option<Instant>,
    last_choke: Instant,
    last_resume: Instant,
    /// Bumped whenever the set of had pieces changes.
    epoch: u64,
    /// The epoch the last successful persist recorded.
    saved_epoch: u64,
    /// Pieces known to be on disk: recorded by a flushed save (or vouched
    /// for as such at startup) and had ever since. A stop that records
    /// the pieces unflushed passes these on as durable, so a reboot only
    /// rechecks the rest.
    durable: Vec<bool>,
    /// Pieces that left `have` while a persist job ran: not durable when
    /// it reports, whatever its snapshot says (empty between jobs).
    lost_while_persisting: Vec<bool>,
    /// A persist job is running.
    persisting: bool,
    /// Another persist is wanted once the running one ends.
    persist_again: bool,
    /// The web seeds while the torrent downloads (see `webseeds`).
    webseeds: Option<Box<webseeds::Driver>>,
    /// Web seeds were started for this stretch of downloading (a set
    /// whose seeds were all dropped is not restarted).
    webseeds_tried: bool,
    /// Generation of the last web seeds started (their events carry it).
    webseed_generation: u64,
    /// Bytes from web seeds already stopped.
    webseed_bytes: u64,
    /// Super-seeding state, once a peer connected under it.
    superseed: Option<Box<superseed::SuperSeed>>,
    /// Answers BEP 52 hash requests (v2 and hybrid torrents).
    v2: Option<Arc<crate::v2::HashServer>>,
}

/// What a controller is built from (see [`spawn_controller`]).
struct Parts {
    id: TorrentId,
    metainfo: Metainfo,
    storage: Arc<Storage>,
    options: TorrentOptions,
    session: Arc<SessionShared>,
    resume_dir: Arc<std::path::Path>,
    published: Arc<Published>,
    events: Arc<Events>,
    links: Links,
}

impl Drop for Controller {
    fn drop(&mut self) {
        // Whatever ends it (its stop, a failed check, the session's
        // controller exiting), nobody waits for it any longer.
        self.published.finish();
    }
}

/// The torrent's picker, built if it was dropped (see `idle`).
macro_rules! picker {
    ($c:ident) => {
        $c.picker.get(&$c.have, &$c.wanted)
    };
}
pub(super) use picker;

/// The torrent's swarm state, built if it was dropped (see `idle`).
macro_rules! swarm {
    ($c:ident) => {
        $c.swarm.get_or_insert_with(Box::default)
    };
}
pub(super) use swarm;

impl Controller {
    fn new(parts: Parts) -> Self {
        let Parts {
            id,
            mut metainfo,
            storage,
            options,
            session,
            resume_dir,
            published,
            events,
            links,
        } = parts;
        let info = &metainfo.info;
        let pieces = info.piece_count();
        let now = Instant::now();
        let seed = u64::from_le_bytes(metainfo.info_hash.0[..8].try_into().unwrap_or([7; 8]))
            ^ now.elapsed().as_nanos() as u64
            ^ u64::from(std::process::id());
        let mut picker = idle::LazyPicker::new(
            info.piece_count(),
            info.piece_length,
            info.total_length(),
            options.sequential,
            seed,
        );
        // pieces that end in padding are fetched as their files' bytes:
        // a v2-only torrent's, and a hybrid's BEP 47 padding files
        let mut short = crate::v2::short_pieces(storage.layout());
        short.extend(crate::padding::padding_tails(storage.layout()));
        short.sort_unstable();
        picker.set_short_pieces(short);
        let have = Arc::new(HaveSet::new(info.piece_count()));
        *published.have.lock() = Some(have.clone());
        let claims = Arc::new(BlockClaims::new(
            info.piece_count(),
            info.piece_length,
            BLOCK_SIZE,
        ));
        let wanted = wanted_pieces(storage.layout(), &options.wanted_files);
        let swarm = (!options.peers.is_empty()).then(|| {
            let mut swarm = Box::<idle::Swarm>::default();
            for a in &options.peers {
                swarm.candidates.offer(CandidateSource::Offered, *a, false);
            }
            swarm
        });
        Controller {
            v2: crate::v2::HashServer::new(storage.layout()).map(Arc::new),
            id,
            scheduled: None,
            links,
            info_hash: metainfo.info_hash,
            // Moved out, not copied: the controller serves them from here
            // (`metainfo.info_bytes` is left empty).
            info_bytes: Arc::from(std::mem::take(&mut metainfo.info_bytes)),
            // The piece hashes live in the storage's layout; a second copy
            // here would cost 20 bytes a piece for every torrent. The
            // piece layers (in the layout too), the file list (unless web
            // seeds need it) and what only a UI shows (the daemon keeps
            // the whole file) are left out as well.
            meta: meta::TorrentMeta::new(metainfo, &session.tiers),
            storage,
            options,
            session,
            resume_dir,
            published,
            events,
            picker,
            choker: None,
            have,
            claims,
            hashes: None,
            wanted,
            peers: HashMap::new(),
            next_key: 0,
            filter_seen: 0,
            verifying: 0,
            verify_queue: None,
            pending_haves: Vec::new(),
            haves_due: None,
            swarm,
            announcer: None,
            announcer_v2: None,
            on_dht: false,
            transfer: Arc::default(),
            rates: None,
            state: TorrentState::Checking,
            completed_at: None,
            prepare: None,
            hash_failures: 0,
            corrupt: 0,
            check_cancel: None,
            deferred: Vec::new(),
            stopping: None,
            finished: false,
            last_tick: now,
            quiet_until: None,
            last_choke: now,
            last_resume: now,
            epoch: 0,
            saved_epoch: 0,
            durable: vec![false; pieces],
            lost_while_persisting: Vec::new(),
            persisting: false,
            persist_again: false,
            webseeds: None,
            webseeds_tried: false,
            webseed_generation: 0,
            webseed_bytes: 0,
            superseed: None,
        }
    }

    /// The choker, built on first use (see `choker`).
    fn choker(&mut self) -> &mut Choker {
        let options = &self.options;
        let session = &self.session;
        let info_hash = &self.info_hash;
        self.choker.get_or_insert_with(|| {
            let seed = u64::from_le_bytes(info_hash.0[8..16].try_into().unwrap_or([9; 8]))
                ^ u64::from(std::process::id());
            Box::new(Choker::new(
                ChokerConfig::for_upload_limit(
                    options.upload_limit.or(session.config.upload_limit),
                ),
                seed,
            ))
        })
    }

    /// Where the torrent's resume state is kept.
    fn resume_file(&self) -> PathBuf {
        match &self.options.resume_file {
            Some(file) => file.clone(),
            None => self
                .resume_dir
                .join(format!("{}.resume", self.info_hash.to_hex())),
        }
    }

    fn short(&self) -> String {
        self.info_hash.to_hex()[..8].to_string()
    }

    pub(crate) fn id(&self) -> TorrentId {
        self.id
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// After every event: a stop takes its next step, and a goal of "no
    /// seeding" ends the torrent at once (other goals are checked on its
    /// timers).
    pub(crate) fn after_event(&mut self) {
        self.webseeds_follow_state();
        if self.stopping.is_some() {
            // A peer gone, a hash or a persist back: the stop may go on.
            self.advance_stop(Instant::now());
            return;
        }
        if self.stopping.is_none()
            && !self.finished
            && self.options.seed_goal == SeedGoal::None
            && self.finished_by_goal()
        {
            self.finish();
        }
        self.go_idle();
    }

    /// Routes a peer event; a stopping torrent only keeps its books.
    pub(crate) fn on_peer_msg(&mut self, msg: PeerMsg) {
        if self.stopping.is_some() {
            self.on_peer_closing(msg);
        } else {
            self.on_peer(msg);
        }
    }

    fn running(&self) -> bool {
        matches!(
            self.state,
            TorrentState::Downloading | TorrentState::Seeding
        )
    }

    // ---- peers -------------------------------------------------------

    fn on_peer(&mut self, PeerMsg { key, event, .. }: PeerMsg) {
        if let PeerEvent::Gone(reason) = event {
            self.peer_gone(key, reason);
            return;
        }
        let now = Instant::now();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        match event {
            PeerEvent::Ready {
                addr,
                peer_id,
                fast,
                incoming,
                utp,
                encrypted,
                learnt_mse,
                v2,
                ..
            } => {
                let duplicate = self
                    .peers
                    .iter()
                    .find(|(k, q)| **k != key && q.ready && q.peer_id == Some(peer_id))
                    .map(|(k, q)| (*k, q.incoming));
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                p.ready = true;
                p.addr = addr;
                p.peer_id = Some(peer_id);
                p.fast = fast;
                p.incoming = incoming;
                p.utp = utp;
                p.encrypted = encrypted;
                p.v2 = v2;
                if let Some((other, other_incoming)) = duplicate {
                    let ours = self.session.peer_id;
                    let drop = peers::duplicate_to_close(
                        ours,
                        peer_id,
                        (key, incoming),
                        (other, other_incoming),
                    );
                    debug!("{addr} {}: duplicate connection", self.short());
                    self.close(drop);
                    if drop == key {
                        return;
                    }
                }
                swarm!(self).failed.remove(&addr);
                self.learn_mse(key, learnt_mse);
                self.rechoke(false);
                self.superseed_ready(key);
            }
            PeerEvent::Bitfield(bits) => {
                if p.bits.is_some() {
                    return;
                }
                picker!(self).peer_bitfield(&bits);
                p.bits = Some(bits);
                self.after_peer_pieces(key);
                self.superseed_bits(key);
            }
            PeerEvent::Have(i) => {
                let bits = p.bits.get_or_insert_with(|| Bitfield::new(self.have.len()));
                if !bits.get(i as usize) {
                    bits.set(i as usize);
                    picker!(self).peer_has(i as usize);
                }
                self.after_peer_pieces(key);
                self.superseed_seen(key, &[i]);
            }
            PeerEvent::Choked(choked) => {
                p.peer_choking = choked;
                if choked {
                    if !p.fast {
                        self.picker.peer_gone(key);
                    }
                } else {
                    p.last_block = now;
                    self.fill(key);
                }
            }
            PeerEvent::Interested(i) => {
                p.peer_interested = i;
                self.rechoke(false);
            }
            PeerEvent::Blocks(blocks) => {
                p.last_block = now;
                self.on_blocks(key, blocks);
                self.fill(key);
            }
            PeerEvent::BadBlock(block) => {
                picker!(self).request_lost(key, block);
                self.on_bad_block(key, block);
                self.fill_all();
            }
            PeerEvent::Rejected(block) => {
                // The block goes back to the picker whatever the reason.
                // Refused while unchoking us: a full queue on their side,
                // or they lack the piece (any more), whatever they
                // announced. Once is taken for the former; a second refusal
                // of the same piece takes it out of their set for a while.
                picker!(self).request_lost(key, block);
                if !p.peer_choking && !p.refused_once.insert(block.index) {
                    p.refused_once.remove(&block.index);
                    let piece = block.index as usize;
                    if let Some(bits) = p.bits.as_mut() {
                        if bits.get(piece) {
                            bits.clear(piece);
                            let mut one = Bitfield::new(bits.len());
                            one.set(piece);
                            self.picker.peer_lost_bitfield(&one);
                            p.refused.push((block.index, now + REFUSAL_BACKOFF));
                        }
                    }
                } else if p.refused_once.len() > MAX_REFUSED_ONCE {
                    p.refused_once.clear();
                }
                self.update_interest(key);
                self.fill_all();
            }
            PeerEvent::AllowedFast(i) => {
                if !p.allowed_fast.contains(&i) && p.allowed_fast.len() < 64 {
                    p.allowed_fast.push(i);
                }
                self.fill(key);
            }
            PeerEvent::ExtensionHandshake(hs) => {
                if let Some(q) = hs.reqq {
                    p.reqq = (q as usize).max(1);
                }
                p.client.clone_from(&hs.v);
                if let Some(ip) = hs.yourip {
                    self.session.learn_external_ip(ip, p.addr.ip());
                }
                self.pex_handshake(key, &hs);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.ext = Some(hs);
                }
                self.learn_mse(key, None);
                // `upload_only` may have changed: its choke slot with it.
                self.rechoke(false);
            }
            PeerEvent::Extended { ext, payload } => self.on_extended(key, ext, &payload),
            PeerEvent::DataMissing(piece) => self.data_missing(piece as usize),
            PeerEvent::StorageFailed(e) => {
                self.fail(TorrentError::Write(Arc::new(e)));
            }
            // answers to the leaf requests of per-block blame
            PeerEvent::Hashes { request, hashes } => self.on_leaves(&request, &hashes),
            PeerEvent::HashReject(request) => self.on_leaves_rejected(&request),
            PeerEvent::Gone(_) => {}
        }
    }

    /// An extension message from a peer (BEP 10), other than the handshake
    /// and `ut_metadata` requests (the peer thread answers those). The
    /// place where `ut_pex` plugs in. We never ask for metadata once we
    /// have it, so `ut_metadata` data or rejects here are unsolicited and
    /// ignored (they cost the peer nothing: libtorrent may answer late).
    fn on_extended(&mut self, key: PeerKey, ext: Extension, payload: &[u8]) {
        if ext == Extension::UtPex {
            self.on_pex(key, payload);
            return;
        }
        if ext == Extension::UploadOnly {
            self.on_upload_only(key, payload);
            return;
        }
        debug!(
            "{}: peer {}: {} message of {} bytes ignored",
            self.short(),
            key.0,
            ext.name(),
            payload.len()
        );
    }

    /// libtorrent's `upload_only` message: one byte, nonzero when the peer
    /// now wants nothing (it completed), zero when it wants pieces again.
    /// Kept in its handshake's `upload_only`, which `Peer::upload_only`
    /// reads, so it counts as a seed from now on. An empty payload, or one
    /// from a peer that never sent a handshake, is ignored.
    fn on_upload_only(&mut self, key: PeerKey, payload: &[u8]) {
        let Some(&flag) = payload.first() else {
            debug!(
                "{}: peer {}: empty upload_only ignored",
                self.short(),
                key.0
            );
            return;
        };
        let Some(hs) = self.peers.get_mut(&key).and_then(|p| p.ext.as_mut()) else {
            return;
        };
        let now = flag != 0;
        if hs.upload_only == now {
            return;
        }
        hs.upload_only = now;
        debug!("{}: peer {}: upload_only {now}", self.short(), key.0);
        // as for a handshake: its choke slot goes with it.
        self.rechoke(false);
    }

    fn on_block(&mut self, key: PeerKey, block: BlockRef, _stored: bool) {
        match picker!(self).block_received(key, block) {
            BlockReceived::Stored {
                piece_complete,
                cancel,
            } => {
                for other in cancel {
                    let sent = self
                        .peers
                        .get(&other)
                        .is_none_or(|q| q.commands.try_send(PeerCommand::Cancel(block)).is_ok());
                    if !sent {
                        self.close(other);
                    }
                }
                if piece_complete {
                    self.verify(block.index as usize);
                }
            }
            BlockReceived::Duplicate | BlockReceived::Unrequested => {}
        }
    }

    /// Counts and records blocks a peer stored (or found already stored).
    fn on_blocks(&mut self, key: PeerKey, blocks: Vec<(BlockRef, bool)>) {
        let n: u64 = blocks.iter().map(|(b, _)| u64::from(b.length)).sum();
        self.count_rate(idle::Direction::Down, n, Instant::now());
        self.transfer.downloaded.fetch_add(n, Ordering::Relaxed);
        for (block, stored) in blocks {
            self.on_block(key, block, stored);
        }
    }
}

/// Pieces that hold bytes of a wanted file. Empty selection: everything.
fn wanted_pieces(layout: &Layout, wanted_files: &[bool]) -> Vec<bool> {
    if wanted_files.is_empty() {
        return vec![true; layout.piece_count()];
    }
    let mut wanted = vec![false; layout.piece_count()];
    for (f, spec) in layout.files().iter().enumerate() {
        if spec.padding || !wanted_files.get(f).copied().unwrap_or(true) {
            continue;
        }
        for p in layout.file_pieces(f) {
            wanted[p] = true;
        }
    }
    wanted
}

/// What a ban applies to: the host, except on loopback where every test
/// peer shares one address and the port tells them apart.
fn ban_key(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_loopback() {
        addr
    } else {
        SocketAddr::new(addr.ip(), 0)
    }
}
