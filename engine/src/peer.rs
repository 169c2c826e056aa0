//! One peer connection: the mainline Connection with its Upload and
//! SingleDownload halves.
//!
//! Each connection is one OS thread (the *writer*, which also owns the
//! upload queue) plus a scoped *reader* child that is always joined. The
//! reader decodes frames with `bittern_wire`, writes received blocks straight
//! into storage (claiming each block first, so a block is written once and a
//! piece under verification is never touched), and forwards everything else
//! as [`PeerEvent`]s to the torrent's controller. The writer executes the
//! controller's [`PeerCommand`]s and serves the peer's requests from storage
//! with vectored writes (header + block, no copy into a send buffer).
//!
//! The controller never blocks on a peer: it `try_send`s commands and treats
//! a full queue as a peer too slow to keep. A drop guard reports
//! [`PeerEvent::Gone`] exactly once however the thread ends, panics included.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bittern_storage::Storage;
use bittern_wire::{
    Bitfield, BlockRef, Extension, ExtensionHandshake, Handshake, InfoHash, Message, PeerId,
};
use crossbeam_channel::{Receiver, Sender};
use log::debug;
use parking_lot::Mutex;

use crate::config::Timing;
use crate::error::PeerError;
use crate::fasthash::{FastMap, FastSet};
use crate::inline_hash::InlineHashes;
use crate::picker::PeerKey;
use crate::ratelimit::RateLimiter;
use crate::shared::{BlockClaims, HaveSet};
use crate::transport::{PeerStream, Socket};

mod meta;
mod queue;
mod reader;
mod writer;

pub(crate) use meta::{spawn_meta, MetaContext};
use reader::read_loop;
use writer::Writer;

/// Largest frame we accept: a 16 KiB block plus header, or a bitfield for a
/// torrent with up to 1 Mi pieces, or an extension message.
pub(crate) const MAX_FRAME: usize = 1 << 17;
/// Blocks sent per vectored write while uploading (fewer syscalls and TCP
/// pushes than one block per write; 128 KiB of buffers per connection).
const UPLOAD_BATCH: usize = 8;
/// Requests the peer may queue with us (advertised as `reqq`). Deep, because
/// some clients keep exactly as many requests in flight as the seeder
/// allows and refill them in bursts. Transmission 3.00 asks once a second
/// for up to five times the blocks it got in the last two seconds, capped at
/// our `reqq`: libtorrent seeding to transmission-cli here went from 22 to
/// 54 MB/s with a 20,000-deep queue, and at 20,000 the seeder still ran
/// dry between bursts, where 65,536 lets it ask for the rest of a 1 GiB
/// torrent once the rate is up (about 3% sooner done). Data is read only
/// when it is sent, and a CANCEL costs O(1) however deep the queue (see
/// `queue`). A queued request costs up to about 50 bytes, so a connection
/// that fills the queue holds about 3 MB until it drains (then the memory
/// is given back), and the reader's inbox behind a stalled writer up to
/// 2 MB more.
pub(crate) const OUR_REQQ: usize = 65_536;
/// Requests we refuse (sent while choked, or for pieces we lack) before we
/// call it a flood.
const REFUSED_REQUEST_FLOOD: u32 = 2 * OUR_REQQ as u32;
/// Blocks we never asked for before we give up on the peer.
const UNREQUESTED_LIMIT: u32 = 64;

/// Commands from the controller to a peer thread.
#[derive(Debug)]
pub(crate) enum PeerCommand {
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    /// Send these requests (the picker has recorded them).
    Request(Vec<BlockRef>),
    /// Withdraw a request (endgame duplicate arrived elsewhere).
    Cancel(BlockRef),
    /// We verified these pieces (one HAVE each, written together).
    Haves(Arc<[u32]>),
    /// Send an extension message (BEP 10) of extension `ext`, under the
    /// id the peer gave it in its extension handshake. Dropped quietly
    /// when the peer does not speak `ext` (or has not said yet). This is
    /// the seam extensions plug into (`ut_metadata`, `ut_pex`).
    Extended {
        /// Which extension: the writer looks up the peer's id for it.
        ext: Extension,
        /// The message body (after the extended id byte).
        payload: Vec<u8>,
    },
    /// Send this extension handshake (BEP 10, extended id 0) again: the
    /// encoded dictionary, sent once the peer has sent its own (so it
    /// speaks BEP 10). Used when a download completes, to say
    /// `upload_only` (BEP 21) on connections opened while we still wanted
    /// pieces.
    ExtensionHandshake(Vec<u8>),
    /// Send a BEP 52 hash request (a v2 torrent's piece layers, asked by
    /// the metadata phase of a magnet link).
    HashRequest(bittern_wire::hashes::HashRequest),
    /// Close the connection.
    Close,
}

/// Events from a peer thread to the controller.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    /// Handshake done; the connection is live.
    Ready {
        addr: SocketAddr,
        peer_id: PeerId,
        fast: bool,
        incoming: bool,
        /// Over uTP rather than TCP.
        utp: bool,
        /// The stream is RC4-encrypted (MSE).
        encrypted: bool,
        /// What dialling it taught about its MSE support (see
        /// [`Opened::learnt_mse`]).
        learnt_mse: Option<bool>,
        /// A v2 connection of a v2 or hybrid torrent (BEP 52: the info hash
        /// the handshakes settled on is the v2 one, see
        /// [`crate::v2::is_v2_connection`]): it may be sent hash requests.
        v2: bool,
        /// Their handshake set the v2 bit (a hybrid's v1 connection to
        /// such a peer can be opened again under the v2 hash).
        v2_bit: bool,
    },
    /// A block we requested failed its 16 KiB leaf (BEP 52): not written,
    /// its sender alone is to blame (see `v2::blocks`).
    BadBlock(BlockRef),
    /// Their initial piece set (BITFIELD, HAVE ALL or HAVE NONE).
    Bitfield(Bitfield),
    Have(u32),
    /// They choked (true) or unchoked (false) us. On choke without the fast
    /// extension our outstanding requests are void.
    Choked(bool),
    Interested(bool),
    /// Blocks we requested arrived, in order; `stored` is false when
    /// another peer's copy was already written (endgame duplicate). Batched:
    /// one event per read from the socket, not one per block.
    Blocks(Vec<(BlockRef, bool)>),
    /// They rejected a request (BEP 6).
    Rejected(BlockRef),
    AllowedFast(u32),
    /// Their extension handshake (BEP 10), every time they send one (a
    /// later one may switch extensions on or off). A malformed one ends
    /// the connection instead.
    ExtensionHandshake(Box<ExtensionHandshake>),
    /// An extension message we advertised (by our local id), for the
    /// controller: `ut_pex`, and `ut_metadata` data and rejects
    /// (`ut_metadata` requests are answered by the peer thread itself).
    /// At most one frame (`MAX_FRAME`) of payload.
    Extended {
        /// Which of our extensions it is.
        ext: Extension,
        /// The message body (after the extended id byte).
        payload: Vec<u8>,
    },
    /// Writing a block failed: the torrent's storage is in trouble.
    StorageFailed(bittern_storage::Error),
    /// A piece we have could not be read for upload (file deleted or
    /// truncated under us): it must be marked missing.
    DataMissing(u32),
    /// The answer to a hash request we sent (BEP 52 `hashes`): the
    /// request echoed, then its base nodes and uncles.
    Hashes {
        request: bittern_wire::hashes::HashRequest,
        hashes: Vec<bittern_storage::merkle::Hash256>,
    },
    /// The peer will not answer a hash request we sent (`hash reject`).
    HashReject(bittern_wire::hashes::HashRequest),
    /// The connection ended. Sent exactly once, last.
    Gone(PeerError),
}

/// A message to the controller: who and what.
#[derive(Debug)]
pub(crate) struct PeerMsg {
    /// The torrent the connection belongs to.
    pub torrent: crate::torrent::TorrentId,
    pub key: PeerKey,
    pub event: PeerEvent,
}

/// Payload counters the controller samples for rates.
#[derive(Debug, Default)]
pub(crate) struct PeerStats {
    pub downloaded: AtomicU64,
    pub uploaded: AtomicU64,
}

/// Everything a peer thread needs, handed over at spawn.
pub(crate) struct PeerContext {
    pub torrent: crate::torrent::TorrentId,
    pub key: PeerKey,
    pub info_hash: InfoHash,
    pub our_id: PeerId,
    pub storage: Arc<Storage>,
    pub have: Arc<HaveSet>,
    pub claims: Arc<BlockClaims>,
    pub hashes: Arc<InlineHashes>,
    /// Feed `hashes` as blocks arrive (see `SessionConfig::inline_hashing`).
    pub inline_hashing: bool,
    /// Upload from maps (see `SessionConfig::mapped_upload`).
    pub mapped_upload: bool,
    pub events: Sender<PeerMsg>,
    pub stats: Arc<PeerStats>,
    /// The torrent's counters (the reader adds the bytes it writes).
    pub transfer: Arc<crate::torrent::Transfer>,
    /// The torrent's published state: its own limiters, and whether the
    /// session's apply too (`TorrentHandle::set_honors_session_limits`).
    pub published: Arc<crate::torrent::Published>,
    /// The session's limiters (upload, download).
    pub session_limits: [Arc<RateLimiter>; 2],
    pub timing: Timing,
    /// Super-seeding (BEP 16): the pieces revealed to this peer, the only
    /// ones announced and served (`None`: every piece we have).
    pub revealed: Option<Arc<HaveSet>>,
    /// What we say in our extension handshake.
    pub ext: ExtensionSetup,
    /// How connections we dial use protocol encryption.
    pub encryption: crate::config::Encryption,
    /// The session's DHT node and its UDP port (BEP 5 `port` message), for
    /// public torrents while the DHT is on.
    pub dht: Option<(Arc<crate::dht::SessionDht>, u16)>,
    /// How outgoing connections are made.
    pub dial: Dial,
    /// For v2 and hybrid torrents: the truncated v2 info hash, and the
    /// answers to hash requests (BEP 52).
    pub v2: Option<(InfoHash, Arc<crate::v2::HashServer>)>,
    /// What is known of this peer's MSE support, for the dial rule
    /// ([`crate::handshake::dial_steps`]); `None` for incoming peers.
    pub known_mse: Option<bool>,
}

/// The transports outgoing connections may use: TCP (unless `--no-tcp`),
/// then uTP when the session runs it.
#[derive(Clone)]
pub(crate) struct Dial {
    /// The session's uTP multiplexers by local address (empty: no
    /// outgoing uTP); a peer is dialled from the one of its family.
    pub utp: Vec<(SocketAddr, bittern_utp::Multiplexer)>,
    /// How long a uTP connect may take.
    pub utp_timeout: Duration,
    /// Outgoing TCP allowed.
    pub tcp: bool,
    /// This peer was flagged as speaking uTP (PEX `0x04`): uTP first,
    /// then TCP.
    pub utp_first: bool,
}

impl Dial {
    /// Connects to `addr`: TCP first (if on), uTP when TCP fails or is
    /// off (if on); the other way round for a peer flagged as speaking
    /// uTP (`utp_first`). TCP first keeps the zero-copy upload path and a fast
    /// answer from hosts that refuse (bittern-to-bittern over uTP moves
    /// about half the bytes per CPU second); a peer reachable only over uTP
    /// costs one failed TCP connect. A uTP dial gives up as soon as
    /// `cancelled` (the controller closed the connection): a peer that
    /// never answers must not hold up a stop.
    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Socket, PeerError> {
        let mux = self.mux(addr);
        if self.utp_first && mux.is_some() {
            match self.connect_utp(addr, timeout, cancelled) {
                Ok(s) => return Ok(s),
                Err(e) if self.tcp && !cancelled() => {
                    debug!("{addr}: utp connect failed ({e}), trying tcp")
                }
                Err(e) => return Err(e),
            }
        }
        if self.tcp {
            match std::net::TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => return Ok(Socket::Tcp(s)),
                Err(e) if mux.is_some() && !self.utp_first && !cancelled() => {
                    debug!("{addr}: tcp connect failed ({e}), trying utp")
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.connect_utp(addr, timeout, cancelled)
    }

    /// The session's uTP multiplexer for a peer of `addr`'s family.
    fn mux(&self, addr: SocketAddr) -> Option<&bittern_utp::Multiplexer> {
        self.utp
            .iter()
            .find(|(local, _)| local.is_ipv4() == addr.is_ipv4())
            .map(|(_, m)| m)
    }

    /// Whether `addr` can be dialled over uTP.
    fn has_utp(&self, addr: SocketAddr) -> bool {
        self.mux(addr).is_some()
    }

    /// Connects to `addr` over uTP only.
    fn connect_utp(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Socket, PeerError> {
        let Some(mux) = self.mux(addr) else {
            return Err(PeerError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "no transport to dial with (tcp and utp off)",
            )));
        };
        match mux.connect_cancellable(addr, self.utp_timeout.min(timeout), cancelled) {
            Ok(s) => Ok(Socket::Utp(s)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(PeerError::Closed),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether a dial failed because the peer closed or reset the connection
/// before its handshake (as opposed to a timeout or a bad handshake).
fn closed_early(e: &PeerError) -> bool {
    let io_closed = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        )
    };
    match e {
        PeerError::Io(e) => io_closed(e),
        PeerError::Mse(bittern_wire::mse::HandshakeIoError::Closed) => true,
        PeerError::Mse(bittern_wire::mse::HandshakeIoError::Io(e)) => io_closed(e),
        _ => false,
    }
}

impl PeerContext {
    /// Whether a request for `piece` may be served: we have it, and under
    /// super-seeding revealed it to this peer.
    pub(crate) fn serves(&self, piece: usize) -> bool {
        self.have.contains(piece) && self.revealed.as_ref().is_none_or(|r| r.contains(piece))
    }
}

/// What a connection says about us in its extension handshake (BEP 10),
/// and the info dictionary it serves over `ut_metadata` (BEP 9).
#[derive(Clone, Default)]
pub(crate) struct ExtensionSetup {
    /// Our listen port (`p`), so a peer we dialled can dial us back.
    pub listen_port: u16,
    /// The torrent's info dictionary, exactly as hashed: its size is
    /// advertised as `metadata_size` and its pieces are served. `None`
    /// while we are fetching it.
    pub metadata: Option<Arc<[u8]>>,
    /// We want nothing (a seed, or every wanted piece had): BEP 21
    /// `upload_only`.
    pub upload_only: bool,
    /// Peer exchange is allowed (not a private torrent, BEP 27): only
    /// then is `ut_pex` advertised.
    pub pex: bool,
    /// We accept encrypted connections (policy not `disable`): `e` is
    /// sent, so the peer may dial us MSE-first.
    pub encryption: bool,
    /// Our own addresses, sent as `ipv4` / `ipv6` when known (see
    /// `SessionShared::own_ips`).
    pub own_ips: (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
}

impl ExtensionSetup {
    /// Our extension handshake to a peer at `their_addr`.
    pub(crate) fn handshake(&self, their_addr: SocketAddr) -> ExtensionHandshake {
        let mut hs = ExtensionHandshake::with_all_extensions();
        if !self.pex {
            hs.m.remove(Extension::UtPex.name());
        }
        hs.v = Some(format!("bittern {}", env!("CARGO_PKG_VERSION")));
        hs.p = Some(self.listen_port).filter(|&p| p != 0);
        hs.reqq = Some(OUR_REQQ as u32);
        hs.yourip = Some(their_addr.ip());
        hs.metadata_size = self.metadata.as_ref().map(|m| m.len() as u64);
        hs.upload_only = self.upload_only;
        hs.e = self.encryption;
        (hs.ipv4, hs.ipv6) = self.own_ips;
        hs
    }
}

impl PeerContext {
    /// The limiters an upload takes tokens from: the torrent's, then the
    /// session's unless the torrent ignores them.
    pub(crate) fn up_limits(&self) -> impl Iterator<Item = &RateLimiter> + '_ {
        self.limits(&self.published.limits.up, &self.session_limits[0])
    }

    /// As [`up_limits`](Self::up_limits), for downloads.
    pub(crate) fn down_limits(&self) -> impl Iterator<Item = &RateLimiter> + '_ {
        self.limits(&self.published.limits.down, &self.session_limits[1])
    }

    fn limits<'a>(
        &'a self,
        torrent: &'a RateLimiter,
        session: &'a RateLimiter,
    ) -> impl Iterator<Item = &'a RateLimiter> + 'a {
        let honors = self
            .published
            .limits
            .honors_session
            .load(std::sync::atomic::Ordering::Relaxed);
        std::iter::once(torrent).chain(honors.then_some(session))
    }
}

/// How the connection comes about.
pub(crate) enum Origin {
    /// We dial this address.
    Outgoing(SocketAddr),
    /// The listener accepted it and read their handshake.
    Incoming(Box<PeerStream>, Handshake),
}

/// The socket of one connection as its controller holds it, so that it can
/// end the connection from outside: [`cut`](Self::cut) shuts the socket
/// down both ways, and a reader or writer blocked on it returns at once.
#[derive(Debug, Default)]
pub(crate) struct SocketSlot(Mutex<Slot>);

#[derive(Debug, Default)]
enum Slot {
    /// Not connected yet.
    #[default]
    Empty,
    /// A clone of the connection's socket.
    Open(Socket),
    /// Cut by the controller, or the connection ended.
    Cut,
}

impl SocketSlot {
    /// Shuts the connection's socket down (both halves); a connection not
    /// established yet is cut as soon as it is.
    pub(crate) fn cut(&self) {
        let mut slot = self.0.lock();
        if let Slot::Open(s) = &*slot {
            let _ = s.shutdown(Shutdown::Both);
        }
        *slot = Slot::Cut;
    }

    /// Whether the controller cut the connection (a dial in progress gives up).
    fn is_cut(&self) -> bool {
        matches!(*self.0.lock(), Slot::Cut)
    }

    /// Keeps a clone of the new connection's socket for `cut`. Fails when
    /// the connection was cut before it was established.
    fn attach(&self, stream: &Socket) -> Result<(), PeerError> {
        let mut slot = self.0.lock();
        if matches!(*slot, Slot::Cut) {
            let _ = stream.shutdown(Shutdown::Both);
            return Err(PeerError::Closed);
        }
        *slot = Slot::Open(stream.try_clone()?);
        Ok(())
    }
}

/// One connection counted in the session's live connections, owned by the
/// peer thread: dropping it, however the thread ends, gives the count back
/// and closes the controller's clone of the socket. It does not depend on
/// the controller hearing of the end (a controller that has exited never
/// does).
pub(crate) struct Connection {
    count: Arc<AtomicUsize>,
    socket: Arc<SocketSlot>,
    /// The session's half-open count, for an outgoing connection until
    /// its handshake is done (`handshaken`) or it ends.
    dialing: Option<Arc<AtomicUsize>>,
    handshaken: std::sync::atomic::AtomicBool,
}

impl Connection {
    /// Counts a new connection in `count`.
    pub(crate) fn new(count: Arc<AtomicUsize>, socket: Arc<SocketSlot>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Connection {
            count,
            socket,
            dialing: None,
            handshaken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts it in `dialing` too (an outgoing connection) until
    /// [`handshaken`](Self::handshaken) or its end.
    pub(crate) fn dialing(mut self, dialing: Arc<AtomicUsize>) -> Self {
        dialing.fetch_add(1, Ordering::Relaxed);
        self.dialing = Some(dialing);
        self
    }

    /// The connection is open (handshakes exchanged): no longer half-open.
    pub(crate) fn handshaken(&self) {
        if let Some(d) = &self.dialing {
            if !self.handshaken.swap(true, Ordering::Relaxed) {
                d.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.handshaken();
        self.socket.cut();
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the peer thread, which owns `conn` until it ends.
pub(crate) fn spawn(
    ctx: PeerContext,
    origin: Origin,
    commands: Receiver<PeerCommand>,
    conn: Connection,
) -> io::Result<std::thread::JoinHandle<()>> {
    // Thread names fit Linux's 15-byte limit: "pw-<8 hex>-<key>".
    let name = format!("pw-{}-{}", &ctx.info_hash.to_hex()[..8], ctx.key.0);
    std::thread::Builder::new().name(name).spawn(move || {
        let mut guard = GoneGuard {
            torrent: ctx.torrent,
            key: ctx.key,
            events: ctx.events.clone(),
            reason: None,
        };
        // Dropped before `guard`: the count is back before `Gone` is sent.
        let conn = conn;
        let result = run(&ctx, origin, &commands, &conn);
        guard.reason = Some(match result {
            Ok(()) => PeerError::Closed,
            Err(e) => e,
        });
    })
}

/// Sends `Gone` on drop, so the controller hears of every exit, panics too.
struct GoneGuard {
    torrent: crate::torrent::TorrentId,
    key: PeerKey,
    events: Sender<PeerMsg>,
    reason: Option<PeerError>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(PeerError::Panicked);
        let _ = self.events.send(PeerMsg {
            torrent: self.torrent,
            key: self.key,
            event: PeerEvent::Gone(reason),
        });
    }
}

fn run(
    ctx: &PeerContext,
    origin: Origin,
    commands: &Receiver<PeerCommand>,
    conn: &Connection,
) -> Result<(), PeerError> {
    let Opened {
        mut stream,
        theirs,
        incoming,
        learnt_mse,
    } = open(
        &ctx.timing,
        (&our_handshake(ctx), ctx.v2.as_ref().map(|(h, _)| *h)),
        crate::handshake::dial_steps(ctx.encryption, ctx.known_mse),
        ctx.encryption,
        &ctx.dial,
        origin,
        &conn.socket,
    )?;
    conn.handshaken();
    let t = &ctx.timing;
    let addr = stream.socket().peer_addr()?;
    let fast = theirs.supports_fast();
    let extended = theirs.supports_extended();
    let raw = stream.socket();
    raw.set_nodelay(true)?;
    // Writes to a peer that stopped reading end the connection rather than
    // block forever; reads wake up periodically to check idleness.
    raw.set_write_timeout(Some(t.idle_timeout.max(Duration::from_secs(1))))?;
    raw.set_read_timeout(Some(Duration::from_millis(500).min(t.idle_timeout)))?;

    // Opening messages: our piece set, then the extension handshake.
    let mut out = Vec::with_capacity(1024);
    let bits = ctx.revealed.as_ref().unwrap_or(&ctx.have).to_bitfield();
    if fast && bits.count_ones() == 0 {
        Message::HaveNone.encode(&mut out);
    } else if fast && bits.is_full() {
        Message::HaveAll.encode(&mut out);
    } else {
        Message::Bitfield(bits.as_bytes()).encode(&mut out);
    }
    if extended {
        let hs = ctx.ext.handshake(addr);
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
    }
    // BEP 5: our DHT port to a peer that runs a DHT node too.
    if let (Some((_, port)), true) = (&ctx.dht, theirs.supports_dht()) {
        Message::Port(*port).encode(&mut out);
    }
    stream.send(&mut out)?;
    out.clear();
    send(
        ctx,
        PeerEvent::Ready {
            addr,
            peer_id: theirs.peer_id,
            fast,
            incoming,
            utp: matches!(stream.socket(), Socket::Utp(_)),
            encrypted: stream.is_encrypted(),
            learnt_mse,
            v2: crate::v2::is_v2_connection(
                &theirs,
                incoming,
                ctx.info_hash,
                ctx.v2.as_ref().map(|(h, _)| *h),
            ),
            v2_bit: theirs.supports_v2(),
        },
    );
    debug!(
        "{addr} {}: connected (incoming: {incoming}, fast: {fast}, {}{})",
        short(ctx),
        stream.socket().kind(),
        if stream.is_encrypted() { ", rc4" } else { "" },
    );

    let (reader_stream, mut stream) = stream.split()?;
    let link = Link::default();
    // Requests travel in `link.inbox`; this only wakes the writer.
    let (to_writer, from_reader) = crossbeam_channel::bounded::<()>(1);
    std::thread::scope(|scope| {
        let link_r = &link;
        let reader = std::thread::Builder::new()
            .name(format!("pr-{}-{}", &ctx.info_hash.to_hex()[..8], ctx.key.0))
            .spawn_scoped(scope, move || {
                let r = read_loop(ctx, reader_stream, addr, fast, link_r, &to_writer);
                if let Err(e) = r {
                    *link_r.reader_error.lock() = Some(e);
                }
                // Dropping `to_writer` wakes the writer.
            })
            .map_err(PeerError::Io)?;
        let result = Writer {
            ctx,
            stream: &mut stream,
            fast,
            link: &link,
            out,
            refused: 0,
        }
        .run(commands, &from_reader);
        link.closing.store(true, Ordering::Release);
        // Unblock the reader, then wait for it.
        let _ = stream.socket().shutdown(Shutdown::Both);
        let _ = reader.join();
        let reader_error = link.reader_error.lock().take();
        match (result, reader_error) {
            (Err(PeerError::Closed), Some(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
        }
    })
}

/// Our handshake: the DHT bit set while we run a DHT node for this torrent.
fn our_handshake(ctx: &PeerContext) -> Handshake {
    Handshake::new(ctx.info_hash, ctx.our_id)
        .with_dht(ctx.dht.is_some())
        .with_v2(ctx.v2.is_some())
}

/// A connection set up by [`open`].
pub(crate) struct Opened {
    pub stream: Box<PeerStream>,
    /// Their 68-byte handshake.
    pub theirs: Handshake,
    /// They dialled us.
    pub incoming: bool,
    /// What dialling taught about their MSE support: `Some(true)` an MSE
    /// step succeeded, `Some(false)` the MSE step failed and the clear one
    /// worked, `None` nothing (incoming, or only a clear step tried).
    pub learnt_mse: Option<bool>,
}

/// Connects (or takes the accepted socket) and exchanges the 68-byte
/// handshakes, dialling in `steps` (MSE under `encryption`), and checks
/// theirs. An incoming peer gets back the info hash it used (v1, or a v2
/// torrent's truncated v2 hash).
pub(crate) fn open(
    t: &Timing,
    (ours, v2_hash): (&Handshake, Option<InfoHash>),
    steps: &[crate::handshake::DialStep],
    encryption: crate::config::Encryption,
    dial: &Dial,
    origin: Origin,
    socket: &SocketSlot,
) -> Result<Opened, PeerError> {
    let opened = match origin {
        Origin::Outgoing(addr) => {
            let attach = |s: &Socket| socket.attach(s);
            let cut = || socket.is_cut();
            let used_utp = std::cell::Cell::new(false);
            let first = crate::handshake::dial(
                addr,
                (ours, v2_hash),
                encryption,
                steps,
                t.connect_timeout,
                &|a, timeout| {
                    let s = dial.connect(a, timeout, &cut)?;
                    used_utp.set(matches!(s, Socket::Utp(_)));
                    Ok(s)
                },
                &attach,
            );
            let (s, hs, step, fell_back) = match first {
                // A host that takes TCP connections and closes them before
                // a handshake (libtorrent with incoming TCP off does) may
                // still speak uTP.
                Err(e) if !used_utp.get() && dial.has_utp(addr) && closed_early(&e) && !cut() => {
                    debug!("{addr}: closed over tcp before a handshake ({e}), trying utp");
                    crate::handshake::dial(
                        addr,
                        (ours, v2_hash),
                        encryption,
                        steps,
                        t.connect_timeout,
                        &|a, timeout| dial.connect_utp(a, timeout, &cut),
                        &attach,
                    )?
                }
                r => r?,
            };
            let mse = step == crate::handshake::DialStep::Mse;
            Opened {
                stream: Box::new(s),
                theirs: hs,
                incoming: false,
                learnt_mse: (mse || fell_back).then_some(mse),
            }
        }
        Origin::Incoming(mut s, hs) => {
            socket.attach(s.socket())?;
            s.socket().set_write_timeout(Some(t.connect_timeout))?;
            let mut ours = *ours;
            ours.info_hash = crate::v2::answer_hash(&hs, ours.info_hash, v2_hash);
            s.send(&mut ours.encode())?;
            Opened {
                stream: s,
                theirs: hs,
                incoming: true,
                learnt_mse: None,
            }
        }
    };
    if opened.theirs.peer_id == ours.peer_id {
        return Err(PeerError::SelfConnection);
    }
    Ok(opened)
}

fn send(ctx: &PeerContext, event: PeerEvent) {
    let _ = ctx.events.send(PeerMsg {
        torrent: ctx.torrent,
        key: ctx.key,
        event,
    });
}

fn short(ctx: &PeerContext) -> String {
    ctx.info_hash.to_hex()[..8].to_string()
}

/// Bookkeeping shared by the reader and the writer of one connection.
#[derive(Default)]
struct Link {
    requests: Mutex<Requests>,
    reader_error: Mutex<Option<PeerError>>,
    /// The peer's requests and cancels, in arrival order, for the writer.
    inbox: Mutex<Vec<ReaderNote>>,
    /// Set when the writer ends: the reader stops at the next message
    /// instead of working through what is still buffered.
    closing: AtomicBool,
    /// The ids the peer wants extension messages sent under (its last
    /// extension handshake's `m`), for the writer.
    their_ext: Mutex<ExtIds>,
}

/// The peer's extension ids, by our extension.
#[derive(Default)]
pub(crate) struct ExtIds(Vec<(Extension, u8)>);

impl ExtIds {
    /// The ids of every extension we speak, from their handshake.
    pub(crate) fn from_handshake(hs: &ExtensionHandshake) -> Self {
        ExtIds(
            Extension::ALL
                .into_iter()
                .filter_map(|e| hs.id_for(e).map(|id| (e, id)))
                .collect(),
        )
    }

    /// Their id for `ext`, if they speak it.
    pub(crate) fn get(&self, ext: Extension) -> Option<u8> {
        self.0.iter().find(|(e, _)| *e == ext).map(|&(_, id)| id)
    }
}

/// Our requests to the peer.
#[derive(Default)]
struct Requests {
    /// Sent and not yet answered: (piece, begin) -> length.
    outstanding: FastMap<(u32, u32), u32>,
    /// Cancelled by us or voided by a choke: the block may still be on the
    /// wire, so its arrival is no offence, but it is not written.
    late: FastSet<(u32, u32)>,
}

/// Late blocks remembered per connection; beyond this the oldest knowledge
/// is dropped (a peer sending that many stale blocks is misbehaving).
const MAX_LATE: usize = 8192;

impl Requests {
    fn void(&mut self, key: (u32, u32)) {
        if self.late.len() >= MAX_LATE {
            self.late.clear();
        }
        self.late.insert(key);
    }

    fn void_all(&mut self) {
        let keys: Vec<_> = self.outstanding.drain().map(|(k, _)| k).collect();
        for k in keys {
            self.void(k);
        }
    }
}

/// What the reader tells the writer.
enum ReaderNote {
    Request(BlockRef),
    Cancel(BlockRef),
    /// A `ut_metadata` request for this metadata piece.
    MetadataRequest(u32),
    /// A BEP 52 hash request.
    HashRequest(bittern_wire::hashes::HashRequest),
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_cut_ends_a_blocked_read_and_a_connection_cut_early_never_starts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_theirs, _) = listener.accept().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(SocketSlot::default());
        let conn = Connection::new(count.clone(), slot.clone());
        assert_eq!(count.load(Ordering::Relaxed), 1);
        slot.attach(&Socket::Tcp(ours.try_clone().unwrap()))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut ours = ours;
            let mut b = [0u8; 16];
            // Blocks (no read timeout) until the socket is shut down.
            ours.read(&mut b).map_or(usize::MAX, |n| n)
        });
        std::thread::sleep(Duration::from_millis(50));
        slot.cut();
        assert_eq!(reader.join().unwrap(), 0, "the blocked read saw the cut");
        drop(conn);
        assert_eq!(count.load(Ordering::Relaxed), 0, "the count is given back");

        // Cut before the connection was established: it is refused.
        let late = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let slot = SocketSlot::default();
        slot.cut();
        assert!(matches!(
            slot.attach(&Socket::Tcp(late)),
            Err(PeerError::Closed)
        ));
    }
}
