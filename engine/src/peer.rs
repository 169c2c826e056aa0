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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_storage::Storage;
use bittern_wire::{
    decode_message, piece_header, Bitfield, BlockRef, ExtensionHandshake, Handshake, InfoHash,
    Message, PeerId,
};
use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use log::{debug, trace};
use parking_lot::Mutex;

use crate::config::Timing;
use crate::error::PeerError;
use crate::inline_hash::InlineHashes;
use crate::picker::{PeerKey, BLOCK_SIZE};
use crate::ratelimit::RateLimiter;
use crate::shared::{BlockClaims, HaveSet};

/// Largest frame we accept: a 16 KiB block plus header, or a bitfield for a
/// torrent with up to 1 Mi pieces, or an extension message.
pub(crate) const MAX_FRAME: usize = 1 << 17;
/// Blocks sent per vectored write while uploading (fewer syscalls and TCP
/// pushes than one block per write; 128 KiB of buffers per connection).
const UPLOAD_BATCH: usize = 8;
/// Requests the peer may queue with us (advertised as `reqq`).
pub(crate) const OUR_REQQ: usize = 2048;
/// Requests we refuse (sent while choked, or for pieces we lack) before we
/// call it a flood.
const REFUSED_REQUEST_FLOOD: u32 = 4096;
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
    /// We verified a piece.
    Have(u32),
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
    },
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
    /// Extension handshake (BEP 10).
    Extension {
        reqq: Option<u32>,
        client: Option<String>,
    },
    /// Writing a block failed: the torrent's storage is in trouble.
    StorageFailed(bittern_storage::Error),
    /// A piece we have could not be read for upload (file deleted or
    /// truncated under us): it must be marked missing.
    DataMissing(u32),
    /// The connection ended. Sent exactly once, last.
    Gone(PeerError),
}

/// A message to the controller: who and what.
#[derive(Debug)]
pub(crate) struct PeerMsg {
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
    pub key: PeerKey,
    pub info_hash: InfoHash,
    pub our_id: PeerId,
    pub storage: Arc<Storage>,
    pub have: Arc<HaveSet>,
    pub claims: Arc<BlockClaims>,
    pub hashes: Arc<InlineHashes>,
    pub events: Sender<PeerMsg>,
    pub stats: Arc<PeerStats>,
    /// Torrent then session limiter.
    pub up_limits: [Arc<RateLimiter>; 2],
    pub down_limits: [Arc<RateLimiter>; 2],
    pub timing: Timing,
}

/// How the connection comes about.
pub(crate) enum Origin {
    /// We dial this address.
    Outgoing(SocketAddr),
    /// The listener accepted it and read their handshake.
    Incoming(TcpStream, Handshake),
}

/// Starts the peer thread.
pub(crate) fn spawn(
    ctx: PeerContext,
    origin: Origin,
    commands: Receiver<PeerCommand>,
) -> io::Result<std::thread::JoinHandle<()>> {
    // Thread names fit Linux's 15-byte limit: "pw-<8 hex>-<key>".
    let name = format!("pw-{}-{}", &ctx.info_hash.to_hex()[..8], ctx.key.0);
    std::thread::Builder::new().name(name).spawn(move || {
        let mut guard = GoneGuard {
            key: ctx.key,
            events: ctx.events.clone(),
            reason: None,
        };
        let result = run(&ctx, origin, &commands);
        guard.reason = Some(match result {
            Ok(()) => PeerError::Closed,
            Err(e) => e,
        });
    })
}

/// Sends `Gone` on drop, so the controller hears of every exit, panics too.
struct GoneGuard {
    key: PeerKey,
    events: Sender<PeerMsg>,
    reason: Option<PeerError>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| PeerError::Protocol("peer thread panicked".into()));
        let _ = self.events.send(PeerMsg {
            key: self.key,
            event: PeerEvent::Gone(reason),
        });
    }
}

fn run(
    ctx: &PeerContext,
    origin: Origin,
    commands: &Receiver<PeerCommand>,
) -> Result<(), PeerError> {
    let t = &ctx.timing;
    let (mut stream, theirs, incoming) = match origin {
        Origin::Outgoing(addr) => {
            let mut s = TcpStream::connect_timeout(&addr, t.connect_timeout)?;
            s.set_read_timeout(Some(t.connect_timeout))?;
            s.set_write_timeout(Some(t.connect_timeout))?;
            s.write_all(&Handshake::new(ctx.info_hash, ctx.our_id).encode())?;
            let mut buf = [0u8; Handshake::LEN];
            // A deadline on the whole handshake: a read timeout alone
            // restarts with every byte a trickling peer sends.
            let deadline = std::time::Instant::now() + t.connect_timeout;
            crate::session::read_exact_by(&mut s, &mut buf, deadline)?;
            let hs = Handshake::decode(&buf)
                .map_err(|e| PeerError::Protocol(format!("bad handshake: {e}")))?;
            if hs.info_hash != ctx.info_hash {
                return Err(PeerError::WrongInfoHash);
            }
            (s, hs, false)
        }
        Origin::Incoming(mut s, hs) => {
            s.set_write_timeout(Some(t.connect_timeout))?;
            s.write_all(&Handshake::new(ctx.info_hash, ctx.our_id).encode())?;
            (s, hs, true)
        }
    };
    if theirs.peer_id == ctx.our_id {
        return Err(PeerError::SelfConnection);
    }
    let addr = stream.peer_addr()?;
    let fast = theirs.supports_fast();
    let extended = theirs.supports_extended();
    stream.set_nodelay(true)?;
    // Writes to a peer that stopped reading end the connection rather than
    // block forever; reads wake up periodically to check idleness.
    stream.set_write_timeout(Some(t.idle_timeout.max(Duration::from_secs(1))))?;
    stream.set_read_timeout(Some(Duration::from_millis(500).min(t.idle_timeout)))?;

    // Opening messages: our piece set, then the extension handshake.
    let mut out = Vec::with_capacity(1024);
    let bits = ctx.have.to_bitfield();
    if fast && bits.count_ones() == 0 {
        Message::HaveNone.encode(&mut out);
    } else if fast && bits.is_full() {
        Message::HaveAll.encode(&mut out);
    } else {
        Message::Bitfield(bits.as_bytes()).encode(&mut out);
    }
    if extended {
        let hs = ExtensionHandshake {
            v: Some(format!("bittern {}", env!("CARGO_PKG_VERSION"))),
            reqq: Some(OUR_REQQ as u32),
            ..ExtensionHandshake::default()
        };
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
    }
    stream.write_all(&out)?;
    out.clear();
    send(
        ctx,
        PeerEvent::Ready {
            addr,
            peer_id: theirs.peer_id,
            fast,
            incoming,
        },
    );
    debug!(
        "{addr} {}: connected (incoming: {incoming}, fast: {fast})",
        short(ctx)
    );

    let reader_stream = stream.try_clone()?;
    let link = Link::default();
    let (to_writer, from_reader) = crossbeam_channel::bounded::<ReaderNote>(OUR_REQQ + 64);
    std::thread::scope(|scope| {
        let link_r = &link;
        let reader = std::thread::Builder::new()
            .name(format!("pr-{}-{}", &ctx.info_hash.to_hex()[..8], ctx.key.0))
            .spawn_scoped(scope, move || {
                let r = read_loop(ctx, reader_stream, fast, link_r, &to_writer);
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
        }
        .run(commands, &from_reader);
        link.closing.store(true, Ordering::Release);
        // Unblock the reader, then wait for it.
        let _ = stream.shutdown(Shutdown::Both);
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

fn send(ctx: &PeerContext, event: PeerEvent) {
    let _ = ctx.events.send(PeerMsg {
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
    /// Set when the writer ends: the reader stops at the next message
    /// instead of working through what is still buffered.
    closing: AtomicBool,
}

/// Our requests to the peer.
#[derive(Default)]
struct Requests {
    /// Sent and not yet answered: (piece, begin) -> length.
    outstanding: HashMap<(u32, u32), u32>,
    /// Cancelled by us or voided by a choke: the block may still be on the
    /// wire, so its arrival is no offence, but it is not written.
    late: HashSet<(u32, u32)>,
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
}

fn read_loop(
    ctx: &PeerContext,
    stream: TcpStream,
    fast: bool,
    link: &Link,
    to_writer: &Sender<ReaderNote>,
) -> Result<(), PeerError> {
    let mut batch = Vec::new();
    let r = read_frames(ctx, stream, fast, link, to_writer, &mut batch);
    // Blocks already on disk must be reported whatever ended the loop.
    flush_blocks(ctx, &mut batch);
    r
}

/// Reports the blocks stored since the last report.
fn flush_blocks(ctx: &PeerContext, batch: &mut Vec<(BlockRef, bool)>) {
    if !batch.is_empty() {
        send(ctx, PeerEvent::Blocks(std::mem::take(batch)));
    }
}

/// Sends an event after the blocks before it, keeping the peer's order.
fn emit(ctx: &PeerContext, batch: &mut Vec<(BlockRef, bool)>, event: PeerEvent) {
    flush_blocks(ctx, batch);
    send(ctx, event);
}

fn read_frames(
    ctx: &PeerContext,
    mut stream: TcpStream,
    fast: bool,
    link: &Link,
    to_writer: &Sender<ReaderNote>,
    batch: &mut Vec<(BlockRef, bool)>,
) -> Result<(), PeerError> {
    let piece_count = ctx.have.len();
    let mut buf = vec![0u8; 256 * 1024];
    let mut start = 0; // first unconsumed byte
    let mut end = 0; // one past the last byte read
    let mut last_message = Instant::now();
    let mut first = true;
    // The pieces the peer announced so far, to turn a late piece set into
    // HAVEs for the new pieces only.
    let mut known = Bitfield::new(piece_count);
    let mut initial_set = false;
    let mut unrequested = 0u32;
    loop {
        // Decode every whole frame in the buffer.
        while let Some((msg, used)) = decode_message(&buf[start..end], MAX_FRAME)? {
            if link.closing.load(Ordering::Acquire) {
                return Ok(());
            }
            start += used;
            last_message = Instant::now();
            // A piece set before any other message is the peer's initial
            // one. libtorrent sends its extension handshake (and some
            // clients a DHT PORT or keep-alive) ahead of it: those do not
            // count. A later piece set is merged (see `merge_late`).
            let was_first = first;
            if !matches!(
                msg,
                Message::Extended { .. } | Message::Port(_) | Message::KeepAlive
            ) {
                first = false;
            }
            trace!("{}: <- {:?}", ctx.key.0, MsgName(&msg));
            match msg {
                Message::KeepAlive => {}
                Message::Choke => {
                    if !fast {
                        link.requests.lock().void_all();
                    }
                    emit(ctx, batch, PeerEvent::Choked(true));
                }
                Message::Unchoke => emit(ctx, batch, PeerEvent::Choked(false)),
                Message::Interested => emit(ctx, batch, PeerEvent::Interested(true)),
                Message::NotInterested => emit(ctx, batch, PeerEvent::Interested(false)),
                Message::Have(i) => {
                    if i as usize >= piece_count {
                        return Err(PeerError::Protocol(format!("have {i} out of range")));
                    }
                    known.set(i as usize);
                    emit(ctx, batch, PeerEvent::Have(i));
                }
                Message::Bitfield(bytes) => {
                    let bits = Bitfield::from_wire(bytes, piece_count)
                        .map_err(|e| PeerError::Protocol(format!("bad bitfield: {e}")))?;
                    if was_first {
                        initial_set = true;
                        known = bits.clone();
                        emit(ctx, batch, PeerEvent::Bitfield(bits));
                    } else {
                        merge_late(ctx, batch, initial_set, &mut known, bits.iter_ones())?;
                    }
                }
                Message::HaveAll | Message::HaveNone => {
                    if !fast {
                        return Err(PeerError::Protocol("have all/none without fast".into()));
                    }
                    let all = matches!(msg, Message::HaveAll);
                    if was_first {
                        initial_set = true;
                        known = if all {
                            Bitfield::full(piece_count)
                        } else {
                            Bitfield::new(piece_count)
                        };
                        emit(ctx, batch, PeerEvent::Bitfield(known.clone()));
                    } else if all {
                        merge_late(ctx, batch, initial_set, &mut known, 0..piece_count)?;
                    } else {
                        // A late HAVE NONE adds nothing.
                        merge_late(ctx, batch, initial_set, &mut known, 0..0)?;
                    }
                }
                Message::Request(b) => {
                    if to_writer.try_send(ReaderNote::Request(b)).is_err() {
                        return Err(PeerError::Overloaded);
                    }
                }
                Message::Cancel(b) => {
                    let _ = to_writer.try_send(ReaderNote::Cancel(b));
                }
                Message::Piece { index, begin, data } => {
                    let (expected, late) = {
                        let mut r = link.requests.lock();
                        let e = r.outstanding.remove(&(index, begin));
                        (e, e.is_none() && r.late.remove(&(index, begin)))
                    };
                    match expected {
                        Some(len) if len as usize == data.len() => {}
                        Some(_) => {
                            return Err(PeerError::Protocol("block of the wrong length".into()))
                        }
                        None if late => continue,
                        None => {
                            unrequested += 1;
                            if unrequested > UNREQUESTED_LIMIT {
                                return Err(PeerError::Protocol(
                                    "too many unrequested blocks".into(),
                                ));
                            }
                            continue;
                        }
                    }
                    let n = data.len() as u64;
                    for l in &ctx.down_limits {
                        l.acquire(n);
                    }
                    if link.closing.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let block = BlockRef {
                        index,
                        begin,
                        length: data.len() as u32,
                    };
                    let stored = if ctx.claims.claim(index, begin) {
                        match ctx
                            .storage
                            .write_block(index as usize, u64::from(begin), data)
                        {
                            Ok(()) => {
                                ctx.hashes.feed(index, begin, data);
                                ctx.claims.written(index, begin);
                                true
                            }
                            Err(e) => {
                                ctx.claims.release(index, begin);
                                emit(ctx, batch, PeerEvent::StorageFailed(e));
                                return Err(PeerError::Closed);
                            }
                        }
                    } else {
                        false
                    };
                    ctx.stats.downloaded.fetch_add(n, Ordering::Relaxed);
                    batch.push((block, stored));
                }
                Message::Port(_) | Message::Suggest(_) => {}
                Message::Reject(b) => {
                    if !fast {
                        return Err(PeerError::Protocol("reject without fast extension".into()));
                    }
                    if link
                        .requests
                        .lock()
                        .outstanding
                        .remove(&(b.index, b.begin))
                        .is_some()
                    {
                        emit(ctx, batch, PeerEvent::Rejected(b));
                    }
                }
                Message::AllowedFast(i) => {
                    if (i as usize) < piece_count {
                        emit(ctx, batch, PeerEvent::AllowedFast(i));
                    }
                }
                Message::Extended { id: 0, payload } => {
                    // A broken extension handshake is not worth a disconnect.
                    if let Ok(hs) = ExtensionHandshake::decode(payload) {
                        emit(
                            ctx,
                            batch,
                            PeerEvent::Extension {
                                reqq: hs.reqq,
                                client: hs.v,
                            },
                        );
                    }
                }
                Message::Extended { .. } => {}
            }
        }
        // Everything decoded is handled: report the stored blocks at once.
        flush_blocks(ctx, batch);
        // Make room and read more.
        if start == end {
            start = 0;
            end = 0;
        } else if buf.len() - end < MAX_FRAME {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        match stream.read(&mut buf[end..]) {
            Ok(0) => return Err(PeerError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => end += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PeerError::Io(e)),
        }
        if last_message.elapsed() > ctx.timing.idle_timeout {
            return Err(PeerError::Idle);
        }
    }
}

/// A piece set (BITFIELD, HAVE ALL, HAVE NONE) after other messages.
/// aria2c sends one in place of a batch of 20 or more HAVEs, so from a peer
/// that opened with its piece set it is an update: each newly announced
/// piece is reported as a HAVE (pieces never go away). From a peer that
/// skipped the opening piece set it breaks BEP 3 and ends the connection.
fn merge_late(
    ctx: &PeerContext,
    batch: &mut Vec<(BlockRef, bool)>,
    initial_set: bool,
    known: &mut Bitfield,
    pieces: impl Iterator<Item = usize>,
) -> Result<(), PeerError> {
    if !initial_set {
        return Err(PeerError::Protocol("piece set after other messages".into()));
    }
    for i in pieces {
        if known.set(i) {
            emit(ctx, batch, PeerEvent::Have(i as u32));
        }
    }
    Ok(())
}

struct Writer<'a> {
    ctx: &'a PeerContext,
    stream: &'a mut TcpStream,
    fast: bool,
    link: &'a Link,
    /// Small messages waiting to go out with the next write.
    out: Vec<u8>,
}

impl Writer<'_> {
    fn run(
        mut self,
        commands: &Receiver<PeerCommand>,
        from_reader: &Receiver<ReaderNote>,
    ) -> Result<(), PeerError> {
        let mut am_choking = true;
        let mut queue: VecDeque<BlockRef> = VecDeque::new();
        let mut refused = 0u32;
        let mut buffers = vec![vec![0u8; BLOCK_SIZE as usize]; UPLOAD_BATCH];
        let mut last_write = Instant::now();
        loop {
            if !am_choking && !queue.is_empty() {
                // Busy uploading: take what has arrived without blocking or
                // registering for wakeups, then send the next block.
                loop {
                    match commands.try_recv() {
                        Ok(PeerCommand::Close) | Err(TryRecvError::Disconnected) => {
                            self.flush()?;
                            return Ok(());
                        }
                        Ok(cmd) => self.command(cmd, &mut am_choking, &mut queue)?,
                        Err(TryRecvError::Empty) => break,
                    }
                }
                loop {
                    match from_reader.try_recv() {
                        Ok(note) => self.note(note, am_choking, &mut queue, &mut refused)?,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return Err(PeerError::Closed),
                    }
                }
                if !am_choking {
                    self.upload(&mut queue, &mut buffers)?;
                    last_write = Instant::now();
                }
                continue;
            }
            if !self.out.is_empty() {
                self.flush()?;
                last_write = Instant::now();
            }
            let keepalive_in = self
                .ctx
                .timing
                .keepalive
                .saturating_sub(last_write.elapsed())
                .max(Duration::from_millis(10));
            select! {
                recv(commands) -> cmd => match cmd {
                    Err(_) | Ok(PeerCommand::Close) => {
                        self.flush()?;
                        return Ok(());
                    }
                    Ok(cmd) => self.command(cmd, &mut am_choking, &mut queue)?,
                },
                recv(from_reader) -> note => match note {
                    Err(_) => return Err(PeerError::Closed), // the reader ended
                    Ok(note) => self.note(note, am_choking, &mut queue, &mut refused)?,
                },
                default(keepalive_in) => {
                    if last_write.elapsed() >= self.ctx.timing.keepalive {
                        Message::KeepAlive.encode(&mut self.out);
                        self.flush()?;
                        last_write = Instant::now();
                    }
                }
            }
        }
    }

    /// A request or cancel from the peer, passed on by the reader.
    fn note(
        &mut self,
        note: ReaderNote,
        am_choking: bool,
        queue: &mut VecDeque<BlockRef>,
        refused: &mut u32,
    ) -> Result<(), PeerError> {
        match note {
            ReaderNote::Request(b) => {
                if queue.len() >= OUR_REQQ {
                    return Err(PeerError::Overloaded);
                }
                if !am_choking && self.check_request(b)? {
                    queue.push_back(b);
                } else {
                    // Choked, or a piece we lack: refuse, and end a flood.
                    *refused += 1;
                    if *refused > REFUSED_REQUEST_FLOOD {
                        return Err(PeerError::Overloaded);
                    }
                    if self.fast {
                        Message::Reject(b).encode(&mut self.out);
                    }
                }
            }
            ReaderNote::Cancel(b) => {
                if let Some(pos) = queue.iter().position(|q| *q == b) {
                    queue.remove(pos);
                }
            }
        }
        Ok(())
    }

    fn command(
        &mut self,
        cmd: PeerCommand,
        am_choking: &mut bool,
        queue: &mut VecDeque<BlockRef>,
    ) -> Result<(), PeerError> {
        match cmd {
            PeerCommand::Choke => {
                if !*am_choking {
                    *am_choking = true;
                    Message::Choke.encode(&mut self.out);
                    for b in queue.drain(..) {
                        if self.fast {
                            Message::Reject(b).encode(&mut self.out);
                        }
                    }
                }
            }
            PeerCommand::Unchoke => {
                if *am_choking {
                    *am_choking = false;
                    Message::Unchoke.encode(&mut self.out);
                }
            }
            PeerCommand::Interested => Message::Interested.encode(&mut self.out),
            PeerCommand::NotInterested => Message::NotInterested.encode(&mut self.out),
            PeerCommand::Request(blocks) => {
                let mut r = self.link.requests.lock();
                for b in blocks {
                    r.late.remove(&(b.index, b.begin));
                    r.outstanding.insert((b.index, b.begin), b.length);
                    Message::Request(b).encode(&mut self.out);
                }
            }
            PeerCommand::Cancel(b) => {
                let mut r = self.link.requests.lock();
                if r.outstanding.remove(&(b.index, b.begin)).is_some() {
                    r.void((b.index, b.begin));
                    Message::Cancel(b).encode(&mut self.out);
                }
            }
            PeerCommand::Have(i) => Message::Have(i).encode(&mut self.out),
            PeerCommand::Close => {}
        }
        if self.out.len() > 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    /// A request outside the torrent, outside its piece, or larger than
    /// 16 KiB breaks the protocol and ends the connection. Ok(false): a
    /// piece we lack (never had, or lost since we announced it), refused.
    fn check_request(&self, b: BlockRef) -> Result<bool, PeerError> {
        let piece = b.index as usize;
        if piece >= self.ctx.have.len() {
            return Err(PeerError::Protocol(format!(
                "request for piece {piece} out of range"
            )));
        }
        if !self.ctx.have.contains(piece) {
            return Ok(false);
        }
        let piece_len = self.ctx.storage.layout().piece_len(piece);
        if b.length == 0
            || b.length > BLOCK_SIZE
            || u64::from(b.begin) + u64::from(b.length) > piece_len
        {
            return Err(PeerError::Protocol(format!("invalid request {b:?}")));
        }
        Ok(true)
    }

    /// Sends up to [`UPLOAD_BATCH`] queued blocks in one vectored write:
    /// each block is read from storage into its own buffer and goes out
    /// behind its 13-byte header, with any pending small messages first.
    fn upload(
        &mut self,
        queue: &mut VecDeque<BlockRef>,
        buffers: &mut [Vec<u8>],
    ) -> Result<(), PeerError> {
        let mut batch: Vec<(BlockRef, [u8; 13])> = Vec::with_capacity(UPLOAD_BATCH);
        while batch.len() < UPLOAD_BATCH {
            let Some(b) = queue.pop_front() else { break };
            // Re-check: the piece may have gone missing since it was queued.
            if !self.ctx.have.contains(b.index as usize) {
                if self.fast {
                    Message::Reject(b).encode(&mut self.out);
                }
                continue;
            }
            let data = &mut buffers[batch.len()][..b.length as usize];
            if let Err(e) = self
                .ctx
                .storage
                .read_block(b.index as usize, u64::from(b.begin), data)
            {
                debug!(
                    "{}: cannot read piece {} for upload: {e}",
                    self.ctx.key.0, b.index
                );
                if self.fast {
                    Message::Reject(b).encode(&mut self.out);
                }
                send(self.ctx, PeerEvent::DataMissing(b.index));
                continue;
            }
            batch.push((b, piece_header(b.index, b.begin, b.length)));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let n: u64 = batch.iter().map(|(b, _)| u64::from(b.length)).sum();
        for l in &self.ctx.up_limits {
            l.acquire(n);
        }
        let pending = std::mem::take(&mut self.out);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * batch.len());
        parts.push(&pending);
        for (k, (b, header)) in batch.iter().enumerate() {
            parts.push(header);
            parts.push(&buffers[k][..b.length as usize]);
        }
        write_all_vectored(self.stream, &parts)?;
        self.out = pending;
        self.out.clear();
        self.ctx.stats.uploaded.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PeerError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

/// Writes every byte of `parts` with as few syscalls as the kernel allows.
fn write_all_vectored(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut skip = 0usize; // bytes of `parts` already written
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while skip < total {
        let mut slices = Vec::with_capacity(parts.len());
        let mut s = skip;
        for p in parts {
            if s >= p.len() {
                s -= p.len();
            } else {
                slices.push(IoSlice::new(&p[s..]));
                s = 0;
            }
        }
        match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => skip += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Logs a message without its payload.
struct MsgName<'a, 'b>(&'a Message<'b>);

impl std::fmt::Debug for MsgName<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Message::Piece { index, begin, data } => {
                write!(f, "Piece({index}, {begin}, {} bytes)", data.len())
            }
            Message::Bitfield(b) => write!(f, "Bitfield({} bytes)", b.len()),
            Message::Extended { id, payload } => {
                write!(f, "Extended({id}, {} bytes)", payload.len())
            }
            m => write!(f, "{m:?}"),
        }
    }
}
