//! A connection of the metadata phase: a torrent started from a magnet
//! link does not know its piece count yet, so its connections speak only
//! the extension protocol (BEP 10) and `ut_metadata` (BEP 9). One thread
//! per connection, like the full peer thread, reporting the same
//! [`PeerEvent`]s (`Ready`, `ExtensionHandshake`, `Extended`, `Hashes`,
//! `HashReject`, `Gone`) and taking the same [`PeerCommand`]s (`Extended`,
//! `HashRequest`, `Close`; others are ignored). Piece-set and data messages are read and dropped: the
//! connection ends when the metadata is complete, and the torrent then
//! dials the peer again as a normal connection.
//!
//! Traffic is a few small messages and at most 16 KiB pieces, so one
//! thread reads with a short timeout and writes in between; a write that
//! blocks longer than the write timeout ends the connection.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bittern_wire::{
    decode_message, Extension, ExtensionHandshake, Handshake, InfoHash, Message, MetadataMessage,
    PeerId, METADATA_PIECE_LEN,
};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::debug;

use super::{
    open, Connection, ExtIds, ExtensionSetup, GoneGuard, Origin, PeerCommand, PeerEvent, PeerMsg,
    MAX_FRAME,
};
use crate::config::Timing;
use crate::error::{PeerError, Violation};
use crate::picker::PeerKey;

/// How often the thread looks at its commands while the peer is silent:
/// a request waits at most this long to go out (each metadata round trip
/// pays it once). 100 wakeups a second per connection, only while a
/// fetch runs (at most 30 connections, usually well under a second).
const POLL: Duration = Duration::from_millis(10);

/// Everything a metadata-phase connection needs, handed over at spawn.
pub(crate) struct MetaContext {
    pub torrent: crate::torrent::TorrentId,
    pub key: PeerKey,
    pub info_hash: InfoHash,
    /// The torrent's truncated v2 hash (BEP 52; `info_hash` itself for a
    /// `btmh`-only magnet): the handshake sets the v2 bit, and an incoming
    /// peer that named it gets it back.
    pub v2: Option<InfoHash>,
    pub our_id: PeerId,
    pub listen_port: u16,
    pub events: Sender<PeerMsg>,
    pub timing: Timing,
    /// How connections we dial use protocol encryption.
    pub encryption: crate::config::Encryption,
    /// How connections are dialled (uTP, TCP).
    pub dial: super::Dial,
    /// Our own addresses for `ipv4` / `ipv6` in our extension handshake.
    pub own_ips: (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
}

/// Starts a metadata-phase connection, which owns `conn` until it ends.
pub(crate) fn spawn_meta(
    ctx: MetaContext,
    origin: Origin,
    commands: Receiver<PeerCommand>,
    conn: Connection,
) -> io::Result<std::thread::JoinHandle<()>> {
    let name = format!("pm-{}-{}", &ctx.info_hash.to_hex()[..8], ctx.key.0);
    std::thread::Builder::new().name(name).spawn(move || {
        let mut guard = GoneGuard {
            torrent: ctx.torrent,
            key: ctx.key,
            events: ctx.events.clone(),
            reason: None,
        };
        let conn = conn;
        let result = run(&ctx, origin, &commands, &conn);
        guard.reason = Some(match result {
            Ok(()) => PeerError::Closed,
            Err(e) => e,
        });
    })
}

fn emit(ctx: &MetaContext, event: PeerEvent) {
    let _ = ctx.events.send(PeerMsg {
        torrent: ctx.torrent,
        key: ctx.key,
        event,
    });
}

fn run(
    ctx: &MetaContext,
    origin: Origin,
    commands: &Receiver<PeerCommand>,
    conn: &Connection,
) -> Result<(), PeerError> {
    // No DHT bit: whether the torrent is private is in the metadata we lack.
    let super::Opened {
        mut stream,
        theirs,
        incoming,
        learnt_mse,
    } = open(
        &ctx.timing,
        (
            &Handshake::new(ctx.info_hash, ctx.our_id).with_v2(ctx.v2.is_some()),
            ctx.v2,
        ),
        crate::handshake::dial_steps(ctx.encryption, None),
        ctx.encryption,
        &ctx.dial,
        origin,
        &conn.socket,
    )?;
    conn.handshaken();
    let addr = stream.socket().peer_addr()?;
    let fast = theirs.supports_fast();
    if !theirs.supports_extended() {
        debug!("{addr}: no extension protocol, no metadata");
        return Ok(());
    }
    let raw = stream.socket();
    raw.set_nodelay(true)?;
    raw.set_write_timeout(Some(ctx.timing.idle_timeout.max(Duration::from_secs(1))))?;
    raw.set_read_timeout(Some(POLL))?;
    let mut out = Vec::with_capacity(512);
    if fast {
        // BEP 6 wants a piece set first; we have nothing.
        Message::HaveNone.encode(&mut out);
    }
    let ours = ExtensionSetup {
        listen_port: ctx.listen_port,
        metadata: None,
        upload_only: false,
        // Whether the torrent is private is in the metadata we lack:
        // no PEX before it is known (BEP 27).
        pex: false,
        encryption: ctx.encryption != crate::config::Encryption::Disable,
        own_ips: ctx.own_ips,
    }
    .handshake(addr);
    Message::Extended {
        id: 0,
        payload: &ours.encode(),
    }
    .encode(&mut out);
    stream.send(&mut out)?;
    emit(
        ctx,
        PeerEvent::Ready {
            addr,
            peer_id: theirs.peer_id,
            fast,
            incoming,
            utp: matches!(stream.socket(), crate::transport::Socket::Utp(_)),
            encrypted: stream.is_encrypted(),
            learnt_mse,
            v2: crate::v2::is_v2_connection(&theirs, incoming, ctx.info_hash, ctx.v2),
            v2_bit: theirs.supports_v2(),
        },
    );
    debug!("{addr}: metadata connection (incoming: {incoming}, fast: {fast})");
    let mut ids = ExtIds::default();
    let mut buf = vec![0u8; 2 * MAX_FRAME];
    let (mut start, mut end) = (0usize, 0usize);
    let mut last_message = Instant::now();
    loop {
        loop {
            match commands.try_recv() {
                Ok(PeerCommand::Close) | Err(TryRecvError::Disconnected) => return Ok(()),
                Ok(PeerCommand::Extended { ext, payload }) => {
                    if let Some(id) = ids.get(ext) {
                        out.clear();
                        Message::Extended {
                            id,
                            payload: &payload,
                        }
                        .encode(&mut out);
                        stream.send(&mut out)?;
                    }
                }
                Ok(PeerCommand::HashRequest(req)) => {
                    out.clear();
                    Message::HashRequest(req).encode(&mut out);
                    stream.send(&mut out)?;
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
            }
        }
        while let Some((msg, used)) = decode_message(&buf[start..end], MAX_FRAME)? {
            start += used;
            last_message = Instant::now();
            match msg {
                Message::Extended { id, payload } => {
                    if let Some(mut reply) = on_extended(ctx, &mut ids, id, payload)? {
                        stream.send(&mut reply)?;
                    }
                }
                Message::Hashes(h) => emit(
                    ctx,
                    PeerEvent::Hashes {
                        request: h.request,
                        hashes: h.base().chain(h.proof()).collect(),
                    },
                ),
                Message::HashReject(r) => emit(ctx, PeerEvent::HashReject(r)),
                // we hold no hashes yet
                Message::HashRequest(r) => {
                    out.clear();
                    Message::HashReject(r).encode(&mut out);
                    stream.send(&mut out)?;
                }
                _ => {}
            }
        }
        if start == end {
            (start, end) = (0, 0);
        } else if buf.len() - end < MAX_FRAME {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        match stream.read(&mut buf[end..]) {
            Ok(0) => return Err(PeerError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => end += n,
            // Only the read timeout: `TimedOut` is the connection timing out.
            Err(e) if super::reader::is_read_timeout(&e) => {}
            Err(e) => return Err(PeerError::Io(e)),
        }
        if last_message.elapsed() > ctx.timing.idle_timeout {
            return Err(PeerError::Idle);
        }
    }
}

/// Handles one extension message: the handshake and `ut_metadata` data
/// and rejects go to the controller (a piece longer than 16 KiB ends the
/// connection here, before it is copied); a `ut_metadata` request is
/// rejected at once (the returned frame), since we have nothing yet.
fn on_extended(
    ctx: &MetaContext,
    ids: &mut ExtIds,
    id: u8,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, PeerError> {
    if id == 0 {
        let hs = ExtensionHandshake::decode(payload)
            .map_err(|e| PeerError::Protocol(Violation::ExtensionHandshake(e)))?;
        *ids = ExtIds::from_handshake(&hs);
        emit(ctx, PeerEvent::ExtensionHandshake(Box::new(hs)));
        return Ok(None);
    }
    let Some(ext) = Extension::from_local_id(id) else {
        return Ok(None);
    };
    if ext == Extension::UtMetadata {
        let msg = MetadataMessage::decode(payload)
            .map_err(|e| PeerError::Protocol(Violation::Metadata(e)))?;
        match msg {
            MetadataMessage::Request { piece } => {
                let Some(their) = ids.get(ext) else {
                    return Ok(None);
                };
                let mut p = Vec::new();
                MetadataMessage::Reject { piece }.encode(&mut p);
                let mut out = Vec::new();
                Message::Extended {
                    id: their,
                    payload: &p,
                }
                .encode(&mut out);
                return Ok(Some(out));
            }
            MetadataMessage::Data { piece, data, .. } if data.len() > METADATA_PIECE_LEN => {
                return Err(PeerError::Protocol(Violation::Metadata(
                    bittern_wire::MetadataError::WrongLength {
                        piece,
                        len: data.len(),
                        want: METADATA_PIECE_LEN,
                    },
                )));
            }
            _ => {}
        }
    }
    emit(
        ctx,
        PeerEvent::Extended {
            ext,
            payload: payload.to_vec(),
        },
    );
    Ok(None)
}
