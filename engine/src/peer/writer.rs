//! The writing half of a connection: executes the controller's commands and
//! serves the peer's requests from storage with vectored writes.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bittern_storage::{send_vectored, BlockSource, Chunk, SendError};
use bittern_wire::{piece_header, BlockRef, Extension, Message, MetadataMessage};
use crossbeam_channel::{select, Receiver, TryRecvError};
use log::debug;

use super::queue::{Pushed, RequestQueue};
use super::{
    send, Link, PeerCommand, PeerContext, PeerEvent, ReaderNote, OUR_REQQ, REFUSED_REQUEST_FLOOD,
    UPLOAD_BATCH,
};
use crate::error::{PeerError, Violation};
use crate::picker::BLOCK_SIZE;
use crate::transport::PeerWriter;

pub(super) struct Writer<'a> {
    pub(super) ctx: &'a PeerContext,
    pub(super) stream: &'a mut PeerWriter,
    pub(super) fast: bool,
    pub(super) link: &'a Link,
    /// Small messages waiting to go out with the next write.
    pub(super) out: Vec<u8>,
    /// Requests refused since we last unchoked (choked, or pieces we lack).
    pub(super) refused: u32,
}

impl Writer<'_> {
    pub(super) fn run(
        mut self,
        commands: &Receiver<PeerCommand>,
        from_reader: &Receiver<()>,
    ) -> Result<(), PeerError> {
        let mut am_choking = true;
        let mut queue = RequestQueue::new(OUR_REQQ);
        // Zero-copy from maps needs a plaintext TCP socket; otherwise blocks
        // are read into these buffers (and encrypted in place).
        let mapped = self.ctx.mapped_upload && self.stream.zero_copy().is_some();
        let mut buffers = if mapped {
            Vec::new()
        } else {
            vec![0u8; BLOCK_SIZE as usize * UPLOAD_BATCH]
        };
        let mut last_write = Instant::now();
        let mut inbox = Vec::new();
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
                if let Err(TryRecvError::Disconnected) = from_reader.try_recv() {
                    return Err(PeerError::Closed);
                }
                self.take_inbox(am_choking, &mut queue, &mut inbox)?;
                if !am_choking {
                    if mapped {
                        self.upload_mapped(&mut queue)?;
                    } else {
                        self.upload(&mut queue, &mut buffers)?;
                    }
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
                recv(from_reader) -> wake => match wake {
                    Err(_) => return Err(PeerError::Closed), // the reader ended
                    Ok(()) => self.take_inbox(am_choking, &mut queue, &mut inbox)?,
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

    /// Takes the requests and cancels the reader has collected.
    fn take_inbox(
        &mut self,
        am_choking: bool,
        queue: &mut RequestQueue,
        inbox: &mut Vec<ReaderNote>,
    ) -> Result<(), PeerError> {
        std::mem::swap(&mut *self.link.inbox.lock(), inbox);
        for note in inbox.drain(..) {
            self.note(note, am_choking, queue)?;
        }
        // Give back what a burst grew it to (the two Vecs take turns).
        if inbox.capacity() > 4096 {
            *inbox = Vec::new();
        }
        Ok(())
    }

    /// A request or cancel from the peer, passed on by the reader.
    fn note(
        &mut self,
        note: ReaderNote,
        am_choking: bool,
        queue: &mut RequestQueue,
    ) -> Result<(), PeerError> {
        match note {
            ReaderNote::Request(b) => {
                if !am_choking && self.check_request(b)? {
                    if queue.push(b) == Pushed::Full {
                        return Err(PeerError::Overloaded);
                    }
                } else {
                    // Choked, or a piece we lack: refuse, and end a flood.
                    self.refused += 1;
                    if self.refused > REFUSED_REQUEST_FLOOD {
                        return Err(PeerError::Overloaded);
                    }
                    if self.fast {
                        Message::Reject(b).encode(&mut self.out);
                    }
                }
            }
            ReaderNote::Cancel(b) => {
                queue.cancel(b);
            }
            ReaderNote::MetadataRequest(piece) => {
                // Answered whether or not we choke them (BEP 9): data
                // when we have the info dictionary, a reject while we
                // fetch it ourselves or for a piece past its end.
                let mut payload = Vec::new();
                match &self.ctx.ext.metadata {
                    Some(info) => MetadataMessage::answer(info, piece).encode(&mut payload),
                    None => MetadataMessage::Reject { piece }.encode(&mut payload),
                }
                self.send_extended(Extension::UtMetadata, &payload)?;
            }
            ReaderNote::HashRequest(req) => {
                crate::v2::encode_answer(self.ctx, &req, &mut self.out);
                if self.out.len() > 64 * 1024 {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    /// Queues an extension message under the peer's id for `ext`; dropped
    /// when the peer does not speak it. Flushes past 64 KiB, so a burst of
    /// metadata requests never piles answers up in memory.
    fn send_extended(&mut self, ext: Extension, payload: &[u8]) -> Result<(), PeerError> {
        let Some(id) = self.link.their_ext.lock().get(ext) else {
            debug!("{}: peer does not speak {}", self.ctx.key.0, ext.name());
            return Ok(());
        };
        Message::Extended { id, payload }.encode(&mut self.out);
        if self.out.len() > 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn command(
        &mut self,
        cmd: PeerCommand,
        am_choking: &mut bool,
        queue: &mut RequestQueue,
    ) -> Result<(), PeerError> {
        match cmd {
            PeerCommand::Choke => {
                if !*am_choking {
                    *am_choking = true;
                    Message::Choke.encode(&mut self.out);
                    for b in queue.drain() {
                        if self.fast {
                            Message::Reject(b).encode(&mut self.out);
                        }
                    }
                }
            }
            PeerCommand::Unchoke => {
                if *am_choking {
                    *am_choking = false;
                    // Requests that crossed our earlier choke were no flood.
                    self.refused = 0;
                    Message::Unchoke.encode(&mut self.out);
                }
            }
            PeerCommand::Interested => Message::Interested.encode(&mut self.out),
            PeerCommand::NotInterested => Message::NotInterested.encode(&mut self.out),
            PeerCommand::Request(blocks) => {
                let mut r = self.link.requests.lock();
                // A block asked again after a CANCEL (its request went
                // overdue) stays in `late`: if the peer answers both, the
                // first copy is the answer and the second is dropped
                // quietly.
                for b in blocks {
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
            PeerCommand::Haves(pieces) => {
                for &i in pieces.iter() {
                    Message::Have(i).encode(&mut self.out);
                }
            }
            PeerCommand::Extended { ext, payload } => self.send_extended(ext, &payload)?,
            PeerCommand::ExtensionHandshake(payload) => Message::Extended {
                id: 0,
                payload: &payload,
            }
            .encode(&mut self.out),
            PeerCommand::HashRequest(req) => Message::HashRequest(req).encode(&mut self.out),
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
            return Err(PeerError::Protocol(Violation::RequestOutOfRange(b)));
        }
        if !self.ctx.serves(piece) {
            return Ok(false);
        }
        let piece_len = self.ctx.storage.layout().piece_len(piece);
        if b.length == 0
            || b.length > BLOCK_SIZE
            || u64::from(b.begin) + u64::from(b.length) > piece_len
        {
            return Err(PeerError::Protocol(Violation::InvalidRequest(b)));
        }
        Ok(true)
    }

    /// Sends up to [`UPLOAD_BATCH`] queued blocks in one vectored write:
    /// each block is read from storage into its slot of `buffers` (one
    /// `BLOCK_SIZE` slot per block) and goes out behind its 13-byte header,
    /// with any pending small messages first. Adjacent blocks of a piece
    /// (the usual order of a leecher's requests) sit in adjacent slots and
    /// are read with one call: a 1 GiB upload made 65,536 `pread`s of 16 KiB.
    fn upload(&mut self, queue: &mut RequestQueue, buffers: &mut [u8]) -> Result<(), PeerError> {
        let bs = BLOCK_SIZE as usize;
        let mut wanted: Vec<BlockRef> = Vec::with_capacity(UPLOAD_BATCH);
        while wanted.len() < UPLOAD_BATCH {
            let Some(b) = self.next_had(queue) else { break };
            wanted.push(b);
        }
        let mut readable = [true; UPLOAD_BATCH];
        let mut i = 0;
        while i < wanted.len() {
            let mut j = i + 1;
            while j < wanted.len()
                && wanted[j - 1].length == BLOCK_SIZE
                && wanted[j].index == wanted[i].index
                && wanted[j - 1].begin.checked_add(BLOCK_SIZE) == Some(wanted[j].begin)
            {
                j += 1;
            }
            let len = (j - 1 - i) * bs + wanted[j - 1].length as usize;
            let first = wanted[i];
            let run = &mut buffers[i * bs..i * bs + len];
            let storage = &self.ctx.storage;
            if storage
                .read_block(first.index as usize, u64::from(first.begin), run)
                .is_err()
            {
                // Which blocks cannot be read: each on its own.
                for (k, b) in wanted.iter().enumerate().take(j).skip(i) {
                    let slot = &mut buffers[k * bs..k * bs + b.length as usize];
                    if let Err(e) = storage.read_block(b.index as usize, u64::from(b.begin), slot) {
                        self.refuse_lost(*b, &e);
                        readable[k] = false;
                    }
                }
            }
            i = j;
        }
        let mut batch: Vec<(BlockRef, [u8; 13])> = wanted
            .iter()
            .zip(readable)
            .filter(|(_, ok)| *ok)
            .map(|(b, _)| (*b, piece_header(b.index, b.begin, b.length)))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let n: u64 = batch.iter().map(|(b, _)| u64::from(b.length)).sum();
        for l in self.ctx.up_limits() {
            l.acquire(n);
        }
        let mut pending = std::mem::take(&mut self.out);
        let mut parts: Vec<&mut [u8]> = Vec::with_capacity(1 + 2 * batch.len());
        parts.push(&mut pending);
        let slots = buffers.chunks_mut(bs).zip(readable).filter(|(_, ok)| *ok);
        for ((b, header), (slot, _)) in batch.iter_mut().zip(slots) {
            parts.push(header);
            parts.push(&mut slot[..b.length as usize]);
        }
        // Encrypted connections encrypt the parts in place: no extra copy.
        self.stream.send_parts(&mut parts)?;
        drop(parts);
        self.out = pending;
        self.out.clear();
        self.ctx.stats.uploaded.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Sends up to [`UPLOAD_BATCH`] queued blocks in one vectored write
    /// whose block parts point into read-only maps of the files (see
    /// `bittern_storage::send_vectored`): the kernel copies each byte once.
    /// Each block's files are checked first, so a block whose data is gone
    /// is rejected before its header goes out.
    fn upload_mapped(&mut self, queue: &mut RequestQueue) -> Result<(), PeerError> {
        let mut wanted: Vec<BlockRef> = Vec::with_capacity(UPLOAD_BATCH);
        while wanted.len() < UPLOAD_BATCH {
            let Some(b) = self.next_had(queue) else { break };
            wanted.push(b);
        }
        // One size check per file for the batch, before any header goes out.
        let spans: Vec<(usize, u64, u64)> = wanted
            .iter()
            .map(|b| (b.index as usize, u64::from(b.begin), u64::from(b.length)))
            .collect();
        let sources = self.ctx.storage.block_sources(&spans);
        let mut batch: Vec<(BlockRef, BlockSource, [u8; 13])> = Vec::with_capacity(wanted.len());
        for (b, src) in wanted.into_iter().zip(sources) {
            match src {
                Ok(src) => batch.push((b, src, piece_header(b.index, b.begin, b.length))),
                Err(e) => self.refuse_lost(b, &e),
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let n: u64 = batch.iter().map(|(b, _, _)| u64::from(b.length)).sum();
        for l in self.ctx.up_limits() {
            l.acquire(n);
        }
        let pending = std::mem::take(&mut self.out);
        let mut chunks: Vec<Chunk<'_>> = Vec::with_capacity(1 + 2 * batch.len());
        chunks.push(Chunk::Bytes(&pending));
        for (_, src, header) in &batch {
            chunks.push(Chunk::Bytes(header));
            chunks.push(Chunk::Block(src));
        }
        let Some(tcp) = self.stream.zero_copy() else {
            // `run` chose this path for plaintext TCP only.
            return Err(PeerError::Io(io::ErrorKind::Unsupported.into()));
        };
        match send_vectored(tcp, &chunks) {
            Ok(()) => {}
            Err(SendError::Sink(e)) => return Err(PeerError::Io(e)),
            Err(SendError::Source(e)) => {
                // Part of a block may be on the wire: the stream is broken.
                debug!("{}: data vanished while uploading: {e}", self.ctx.key.0);
                // Which blocks lost their data: check each again.
                for (b, _, _) in &batch {
                    let storage = &self.ctx.storage;
                    if let Err(e) = storage.block_source(
                        b.index as usize,
                        u64::from(b.begin),
                        u64::from(b.length),
                    ) {
                        if e.is_missing_data() {
                            send(self.ctx, PeerEvent::DataMissing(b.index));
                        }
                    }
                }
                return Err(PeerError::Storage(e));
            }
        }
        self.out = pending;
        self.out.clear();
        self.ctx.stats.uploaded.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The next queued request for a piece we still have; requests for
    /// pieces lost since they were queued are refused on the way.
    fn next_had(&mut self, queue: &mut RequestQueue) -> Option<BlockRef> {
        while let Some(b) = queue.pop() {
            if self.ctx.serves(b.index as usize) {
                return Some(b);
            }
            if self.fast {
                Message::Reject(b).encode(&mut self.out);
            }
        }
        None
    }

    /// A requested block whose data cannot be read: refuse it and report
    /// the piece missing.
    fn refuse_lost(&mut self, b: BlockRef, e: &bittern_storage::Error) {
        debug!(
            "{}: cannot read piece {} for upload: {e}",
            self.ctx.key.0, b.index
        );
        if self.fast {
            Message::Reject(b).encode(&mut self.out);
        }
        send(self.ctx, PeerEvent::DataMissing(b.index));
    }

    fn flush(&mut self) -> Result<(), PeerError> {
        if !self.out.is_empty() {
            self.stream.send(&mut self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}
