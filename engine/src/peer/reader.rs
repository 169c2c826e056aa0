//! The reading half of a connection: decodes frames, writes received
//! blocks into storage (batching their reports), and passes requests to the
//! writer.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bittern_wire::{
    decode_message, Bitfield, BlockRef, Extension, ExtensionHandshake, Message, MetadataMessage,
};
use crossbeam_channel::Sender;
use log::trace;

use super::{
    send, ExtIds, Link, PeerContext, PeerEvent, ReaderNote, MAX_FRAME, OUR_REQQ, UNREQUESTED_LIMIT,
};
use crate::error::{PeerError, Violation};
use crate::shared::{BlockClaims, TryClaim};
use crate::transport::PeerReader;

pub(super) fn read_loop(
    ctx: &PeerContext,
    stream: PeerReader,
    peer: SocketAddr,
    fast: bool,
    link: &Link,
    to_writer: &Sender<()>,
) -> Result<(), PeerError> {
    let mut batch = Vec::new();
    let r = read_frames(ctx, stream, peer, fast, link, to_writer, &mut batch);
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
    mut stream: PeerReader,
    peer: SocketAddr,
    fast: bool,
    link: &Link,
    to_writer: &Sender<()>,
    batch: &mut Vec<(BlockRef, bool)>,
) -> Result<(), PeerError> {
    let piece_count = ctx.have.len();
    let mut buf = bittern_storage::AlignedBuf::zeroed(256 * 1024);
    let mut start = 0; // first unconsumed byte
    let mut end = 0; // one past the last byte read
    let mut last_message = Instant::now();
    let mut first = true;
    let mut dht_pinged = false;
    // The pieces the peer announced so far, to turn a late piece set into
    // HAVEs for the new pieces only.
    let mut known = Bitfield::new(piece_count);
    let mut initial_set = false;
    let mut unrequested = 0u32;
    loop {
        // Consecutive blocks of this buffer go to storage in one write.
        let mut run = Run::new(&ctx.claims);
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
            if !matches!(msg, Message::Piece { .. }) {
                // Blocks before this message are written and reported first.
                flush_run(ctx, &mut run, batch)?;
            }
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
                        return Err(PeerError::Protocol(Violation::HaveOutOfRange(i)));
                    }
                    known.set(i as usize);
                    emit(ctx, batch, PeerEvent::Have(i));
                }
                Message::Bitfield(bytes) => {
                    let bits = Bitfield::from_wire(bytes, piece_count)
                        .map_err(|e| PeerError::Protocol(Violation::Bitfield(e)))?;
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
                        return Err(PeerError::Protocol(Violation::HaveAllNoneWithoutFast));
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
                Message::Request(b) => note_for_writer(link, to_writer, ReaderNote::Request(b))?,
                Message::Cancel(b) => note_for_writer(link, to_writer, ReaderNote::Cancel(b))?,
                Message::Piece { index, begin, data } => {
                    let (expected, late) = {
                        let mut r = link.requests.lock();
                        let e = r.outstanding.remove(&(index, begin));
                        (e, e.is_none() && r.late.remove(&(index, begin)))
                    };
                    match expected {
                        Some(len) if len as usize == data.len() => {}
                        Some(_) => return Err(PeerError::Protocol(Violation::BlockLength)),
                        None if late => continue,
                        None => {
                            unrequested += 1;
                            if unrequested > UNREQUESTED_LIMIT {
                                return Err(PeerError::Protocol(Violation::UnrequestedBlocks));
                            }
                            continue;
                        }
                    }
                    let n = data.len() as u64;
                    take_tokens(ctx, n, &mut run, batch)?;
                    if link.closing.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let block = BlockRef {
                        index,
                        begin,
                        length: data.len() as u32,
                    };
                    ctx.stats.downloaded.fetch_add(n, Ordering::Relaxed);
                    if let Some((_, server)) = &ctx.v2 {
                        // BEP 52: checked against its proven leaf when the
                        // piece's leaves are known; a bad block is dropped
                        if server.check_block(index as usize, begin, data) == Some(false) {
                            flush_run(ctx, &mut run, batch)?;
                            emit(ctx, batch, PeerEvent::BadBlock(block));
                            continue;
                        }
                    }
                    match ctx.claims.try_claim(index, begin) {
                        TryClaim::Got => {
                            if !run.extends(block) {
                                if let Err(e) = flush_run(ctx, &mut run, batch) {
                                    // Not in the run yet: give its claim back too.
                                    ctx.claims.release(index, begin);
                                    return Err(e);
                                }
                            }
                            run.push(block, data);
                        }
                        TryClaim::Busy => {
                            // Another connection is writing this block (an
                            // endgame duplicate): wait for that write, but
                            // never while holding unwritten claims.
                            flush_run(ctx, &mut run, batch)?;
                            if ctx.claims.claim(index, begin) {
                                run.push(block, data);
                            } else {
                                batch.push((block, false));
                            }
                        }
                        TryClaim::Taken => {
                            flush_run(ctx, &mut run, batch)?;
                            batch.push((block, false));
                        }
                    }
                }
                Message::Port(port) => {
                    // BEP 5: ping the peer's DHT node (once per
                    // connection); it enters our table if it answers.
                    if let (Some((dht, _)), true) = (&ctx.dht, port != 0 && !dht_pinged) {
                        dht_pinged = true;
                        dht.add_node(SocketAddr::new(peer.ip(), port));
                    }
                }
                Message::Suggest(_) => {}
                Message::Reject(b) => {
                    if !fast {
                        return Err(PeerError::Protocol(Violation::RejectWithoutFast));
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
                    // Unknown keys and odd fields are ignored by the
                    // decoder; a payload that is no dictionary ends the
                    // connection (only this one).
                    let hs = ExtensionHandshake::decode(payload)
                        .map_err(|e| PeerError::Protocol(Violation::ExtensionHandshake(e)))?;
                    *link.their_ext.lock() = ExtIds::from_handshake(&hs);
                    emit(ctx, batch, PeerEvent::ExtensionHandshake(Box::new(hs)));
                }
                Message::Extended { id, payload } => {
                    on_extended(ctx, link, to_writer, batch, id, payload)?;
                }
                // BEP 52: requests are answered by the writer (hashes or a
                // reject); answers to ours (the leaves of a failed v2
                // piece) go to the controller.
                Message::HashRequest(r) => {
                    note_for_writer(link, to_writer, ReaderNote::HashRequest(r))?;
                }
                Message::Hashes(h) => {
                    let hashes: Vec<_> = h.base().chain(h.proof()).collect();
                    if let Some((_, server)) = &ctx.v2 {
                        // a piece's leaves, proven here so that the next
                        // block of it is checked on arrival (`v2::blocks`)
                        let layout = ctx.storage.layout();
                        if let Some(p) =
                            server.learn_leaves(&h.request, &hashes, |p| layout.piece_hash_v2(p))
                        {
                            trace!("{}: leaves of piece {p} proven", ctx.key.0);
                        }
                    }
                    emit(
                        ctx,
                        batch,
                        PeerEvent::Hashes {
                            request: h.request,
                            hashes,
                        },
                    );
                }
                Message::HashReject(r) => emit(ctx, batch, PeerEvent::HashReject(r)),
            }
        }
        // Everything decoded is handled: write and report the blocks at once.
        flush_run(ctx, &mut run, batch)?;
        drop(run);
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
            // The read timeout (`WouldBlock`, as `TcpStream` reports it on
            // Unix; the engine is Unix-only, Windows would say `TimedOut`):
            // a chance to see the writer end and the peer go idle. Not
            // `TimedOut`: that is the connection itself timing out (TCP's
            // `ETIMEDOUT`, a uTP peer gone silent), and it stays so; taken
            // for a read timeout it spun this loop until the idle timeout.
            Err(e) if is_read_timeout(&e) => {
                if link.closing.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
            Err(e) => return Err(PeerError::Io(e)),
        }
        if last_message.elapsed() > ctx.timing.idle_timeout {
            return Err(PeerError::Idle);
        }
    }
}

/// Whether a read error only means "nothing yet": the read timeout
/// expired (`WouldBlock`) or a signal interrupted it. Every other error,
/// `TimedOut` among them, ends the connection.
pub(super) fn is_read_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Takes `n` bytes of download tokens from the torrent's and the session's
/// limiters. Before sleeping for them, writes and reports the blocks of
/// the run: a claim is never held across a sleep, so another connection
/// with the same block (endgame) waits only for a write, and the
/// controller can cancel the duplicates meanwhile.
fn take_tokens(
    ctx: &PeerContext,
    n: u64,
    run: &mut Run<'_>,
    batch: &mut Vec<(BlockRef, bool)>,
) -> Result<(), PeerError> {
    for l in ctx.down_limits() {
        if l.try_take(n, Instant::now()).is_err() {
            flush_run(ctx, run, batch)?;
            flush_blocks(ctx, batch);
            l.acquire(n);
        }
    }
    Ok(())
}

/// Passes a request or cancel to the writer. The inbox holds at most
/// twice our advertised queue depth: more only piles up while the writer is
/// stuck in a write to a peer that does not read, so it ends the peer.
fn note_for_writer(link: &Link, to_writer: &Sender<()>, note: ReaderNote) -> Result<(), PeerError> {
    let mut inbox = link.inbox.lock();
    if inbox.len() >= 2 * OUR_REQQ {
        return Err(PeerError::Overloaded);
    }
    inbox.push(note);
    drop(inbox);
    let _ = to_writer.try_send(());
    Ok(())
}

/// An extension message sent to one of our local ids. `ut_metadata`
/// requests go to the writer, which answers them from the info dictionary
/// (or rejects them); everything else of ours goes to the controller. Ids
/// we never advertised are ignored.
fn on_extended(
    ctx: &PeerContext,
    link: &Link,
    to_writer: &Sender<()>,
    batch: &mut Vec<(BlockRef, bool)>,
    id: u8,
    payload: &[u8],
) -> Result<(), PeerError> {
    let Some(ext) = Extension::from_local_id(id) else {
        return Ok(());
    };
    if ext == Extension::UtMetadata {
        let msg = MetadataMessage::decode(payload)
            .map_err(|e| PeerError::Protocol(Violation::Metadata(e)))?;
        if let MetadataMessage::Request { piece } = msg {
            return note_for_writer(link, to_writer, ReaderNote::MetadataRequest(piece));
        }
    }
    emit(
        ctx,
        batch,
        PeerEvent::Extended {
            ext,
            payload: payload.to_vec(),
        },
    );
    Ok(())
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
        return Err(PeerError::Protocol(Violation::LatePieceSet));
    }
    for i in pieces {
        if known.set(i) {
            emit(ctx, batch, PeerEvent::Have(i as u32));
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

/// Bytes gathered into one storage write at most.
const MAX_RUN: usize = 1 << 20;

/// Consecutive claimed blocks of one piece, waiting to be written together
/// (they still sit in the read buffer). Dropping a run that was not flushed
/// gives its claims back, so no early return can leave a block claimed and
/// unwritten.
struct Run<'a> {
    claims: &'a BlockClaims,
    blocks: Vec<BlockRef>,
    parts: Vec<&'a [u8]>,
    bytes: usize,
}

impl<'a> Run<'a> {
    fn new(claims: &'a BlockClaims) -> Self {
        Run {
            claims,
            blocks: Vec::new(),
            parts: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether `b` continues the run (same piece, next offset, room left).
    fn extends(&self, b: BlockRef) -> bool {
        match self.blocks.last() {
            None => true,
            Some(last) => {
                last.index == b.index
                    && last.begin + last.length == b.begin
                    && self.bytes + b.length as usize <= MAX_RUN
            }
        }
    }

    fn push(&mut self, b: BlockRef, data: &'a [u8]) {
        self.blocks.push(b);
        self.parts.push(data);
        self.bytes += data.len();
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        for b in self.blocks.drain(..) {
            self.claims.release(b.index, b.begin);
        }
    }
}

/// Writes the run with one vectored write, feeds the inline hashes, marks
/// the blocks written and queues their reports.
fn flush_run(
    ctx: &PeerContext,
    run: &mut Run<'_>,
    batch: &mut Vec<(BlockRef, bool)>,
) -> Result<(), PeerError> {
    let Some(first) = run.blocks.first().copied() else {
        return Ok(());
    };
    if let Err(e) =
        ctx.storage
            .write_blocks(first.index as usize, u64::from(first.begin), &run.parts)
    {
        // Give the claims back before anything that may block.
        run.parts.clear();
        run.bytes = 0;
        for b in run.blocks.drain(..) {
            ctx.claims.release(b.index, b.begin);
        }
        emit(ctx, batch, PeerEvent::StorageFailed(e));
        return Err(PeerError::Closed);
    }
    ctx.transfer
        .written
        .fetch_add(run.bytes as u64, Ordering::Relaxed);
    for (b, data) in run.blocks.drain(..).zip(run.parts.drain(..)) {
        if ctx.inline_hashing {
            ctx.hashes.feed(b.index, b.begin, data);
        }
        ctx.claims.written(b.index, b.begin);
        batch.push((b, true));
    }
    run.bytes = 0;
    Ok(())
}
