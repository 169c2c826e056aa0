//! Peer exchange (BEP 11, `ut_pex`) for one torrent: what each peer is
//! told, and what a peer may tell us.
//!
//! Sending: a peer that speaks `ut_pex` gets its first message about a
//! second after its extension handshake, then at most one a minute
//! (`PexDiff`): our connected peers it has not been told of (at most 50
//! a message, the rest in the next one) and those gone since, IPv4 and
//! IPv6 apart (`added`/`added6`, `.f`, `dropped`/`dropped6`). A peer we
//! dialled is listed at the address we dialled, flagged reachable; one
//! that dialled us only at its IP and the listen port its handshake gave
//! (`p`), or not at all. Flags say what we know: seed (its piece set is
//! full, or it said `upload_only`, `0x02`), reachable (we dialled it,
//! `0x10`), encryption (the connection is MSE-encrypted or its handshake
//! said `e`, `0x01`) and uTP (we are connected to it over uTP, or a PEX
//! sender flagged it so, `0x04`). A received `0x01` flag feeds the dial
//! rule (`handshake::dial_steps`); a received `0x04` makes the peer
//! dialled over uTP first (`peer::Dial::utp_first`). The
//! peer itself and our own listening addresses are never listed.
//!
//! Receiving: a message becomes candidates through the torrent's one
//! candidate intake (`add_candidates_from`), like tracker peers, bounded:
//! the first [`PEX_MAX_ADDED`] peers of a message, at most
//! `MAX_PEX_CANDIDATES` PEX candidates waiting at once per torrent, and
//! at most `MAX_PEX_KNOWN` addresses from PEX remembered (see
//! `candidates`), so no flood grows memory or the dial queue. A peer that floods is dropped: more
//! than [`bittern_wire::PEX_MAX_DECODED`] peers in one list (the decoder
//! stops counting there), or more than [`PEX_EARLY_LIMIT`] messages each
//! sooner than [`PEX_MIN_GAP`] after the one before (those are ignored).
//! A message that does not decode closes the connection too.
//!
//! Never on a private torrent (BEP 27): we do not advertise `ut_pex` in
//! our handshake, send no message, and ignore what a peer sends anyway.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_wire::{Extension, ExtensionHandshake, PexDiff, PexFlags, PexMessage, PEX_MAX_ADDED};
use log::debug;

use super::candidates::CandidateSource;
use super::*;
use crate::error::Violation;

/// How long after a peer's extension handshake its first message goes out
/// (our peer set may still be forming; libtorrent waits for its 1 s tick).
const PEX_FIRST: Duration = Duration::from_secs(1);
/// When a round had nothing new for a peer, it is looked at again this
/// much later (a message still goes out at most once a minute).
const PEX_RECHECK: Duration = Duration::from_secs(5);
/// Messages from one peer closer together than this are "too soon". BEP 11
/// senders space them a minute apart (Transmission 90 s); half a minute
/// leaves room for jitter and a client's early first message.
pub(crate) const PEX_MIN_GAP: Duration = Duration::from_secs(30);
/// Too-soon messages ignored from one peer before it is dropped as a flood.
pub(crate) const PEX_EARLY_LIMIT: u32 = 2;
/// PEX state of one connection.
pub(super) struct PeerPex {
    /// What it has been told (and its own addresses, never told).
    diff: PexDiff,
    /// When the next message to it may be built.
    next_send: Instant,
    /// When its last message arrived, and how many came too soon.
    last_received: Option<Instant>,
    early: u32,
}

impl PeerPex {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        PeerPex {
            diff: PexDiff::new(addr),
            next_send: now + PEX_FIRST,
            last_received: None,
            early: 0,
        }
    }
}

/// What the peers of a torrent are worth telling others about.
/// `utp_flagged`: a PEX sender said it speaks uTP.
fn advertised(p: &Peer, utp_flagged: bool) -> Option<(SocketAddr, PexFlags)> {
    if !p.ready || p.closing {
        return None;
    }
    let hs = p.ext.as_deref();
    let addr = if p.incoming {
        // Its address has an ephemeral port: only the port it listens
        // on is any use to others.
        SocketAddr::new(p.addr.ip(), hs.and_then(|h| h.p)?)
    } else {
        p.addr
    };
    let flags = PexFlags {
        seed: p.is_seed(),
        reachable: !p.incoming,
        // Known to support MSE: the connection is encrypted, or its
        // extension handshake said `e`.
        encryption: p.encrypted || hs.is_some_and(|h| h.e),
        utp: p.utp || utp_flagged,
        ..PexFlags::default()
    };
    Some((addr, flags))
}

impl Controller {
    /// Whether this torrent may use PEX at all: on in the session, and
    /// not a private torrent (BEP 27).
    pub(super) fn pex_allowed(&self) -> bool {
        self.session.pex() && !self.meta.private
    }

    /// A peer's extension handshake arrived (the first, or a later one):
    /// PEX starts, stops, or learns the peer's listen address.
    pub(super) fn pex_handshake(&mut self, key: PeerKey, hs: &ExtensionHandshake) {
        let allowed = self.pex_allowed();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if !allowed || hs.id_for(Extension::UtPex).is_none() {
            p.pex = None;
            return;
        }
        let pex = p
            .pex
            .get_or_insert_with(|| Box::new(PeerPex::new(p.addr, Instant::now())));
        if let Some(port) = hs.p {
            pex.diff.add_own_addr(SocketAddr::new(p.addr.ip(), port));
        }
    }

    /// Sends each peer that is due its PEX message (from the tick).
    pub(super) fn pex_round(&mut self, now: Instant) {
        if !self.pex_allowed() || !self.peers.values().any(|p| pex_due(p, now)) {
            return;
        }
        let current: Vec<(SocketAddr, PexFlags)> = self
            .peers
            .values()
            .filter_map(|p| {
                advertised(
                    p,
                    self.swarm
                        .as_deref()
                        .is_some_and(|s| s.candidates.utp(p.addr)),
                )
            })
            .filter(|(a, _)| !self.session.is_own_addr(*a))
            .collect();
        let mut slow = Vec::new();
        for (&key, p) in self.peers.iter_mut() {
            if !pex_due(p, now) {
                continue;
            }
            let Some(pex) = p.pex.as_mut() else { continue };
            match pex.diff.build(now, &current) {
                Some(msg) => {
                    pex.next_send = now + bittern_wire::PEX_INTERVAL;
                    debug!(
                        "{} {}: pex: {:?} added, {} dropped (we listen on {})",
                        p.addr,
                        &self.info_hash.to_hex()[..8],
                        msg.added,
                        msg.dropped.len(),
                        self.session.port
                    );
                    let cmd = PeerCommand::Extended {
                        ext: Extension::UtPex,
                        payload: msg.encode(),
                    };
                    if p.commands.try_send(cmd).is_err() {
                        slow.push(key);
                    }
                }
                None => pex.next_send = now + PEX_RECHECK,
            }
        }
        for key in slow {
            self.close(key);
        }
    }

    /// A `ut_pex` message from a peer.
    pub(super) fn on_pex(&mut self, key: PeerKey, payload: &[u8]) {
        let now = Instant::now();
        if !self.pex_allowed() {
            debug!(
                "{}: peer {}: ut_pex on a private torrent ignored",
                self.short(),
                key.0
            );
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.closing {
            return;
        }
        let addr = p.addr;
        // A peer may send before we saw its handshake say ut_pex.
        let pex = p
            .pex
            .get_or_insert_with(|| Box::new(PeerPex::new(addr, now)));
        let too_soon = pex
            .last_received
            .is_some_and(|t| now.duration_since(t) < PEX_MIN_GAP);
        if too_soon {
            pex.early += 1;
            if pex.early > PEX_EARLY_LIMIT {
                self.violation(key, Violation::PexTooOften);
            } else {
                debug!("{addr} {}: pex message too soon, ignored", self.short());
            }
            return;
        }
        pex.last_received = Some(now);
        let msg = match PexMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                self.violation(key, Violation::Pex(e));
                return;
            }
        };
        if msg.overflow > 0 {
            let peers = msg.added.len() + msg.dropped.len() + msg.overflow;
            self.violation(key, Violation::PexFlood { peers });
            return;
        }
        let seeding = self.state == TorrentState::Seeding;
        for (a, f) in &msg.added {
            if f.encryption && usable(*a) {
                swarm!(self).candidates.note_mse(*a, true);
            }
            if f.utp && usable(*a) {
                swarm!(self).candidates.note_utp(*a);
            }
        }
        let peers: Vec<SocketAddr> = msg
            .added
            .into_iter()
            // Two seeds have nothing to say to each other.
            .filter(|(_, f)| !(seeding && f.seed))
            .map(|(a, _)| a)
            .filter(|a| *a != addr)
            .filter(|a| usable(*a) && !self.session.is_own_addr(*a))
            .take(PEX_MAX_ADDED)
            .collect();
        debug!(
            "{addr} {}: pex: usable peers {peers:?}, {} dropped (we listen on {})",
            self.short(),
            msg.dropped.len(),
            self.session.port
        );
        self.add_candidates_from(CandidateSource::Pex, peers);
    }

    /// Closes a peer that broke a rule the controller checks, reporting
    /// the violation as a peer thread's would be.
    pub(super) fn violation(&mut self, key: PeerKey, violation: Violation) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        debug!("{} {}: {violation}; closing", p.addr, self.short());
        self.emit(TorrentEvent::PeerViolation {
            addr: p.addr,
            violation,
        });
        self.close(key);
    }
}

fn pex_due(p: &Peer, now: Instant) -> bool {
    p.pex.as_ref().is_some_and(|x| x.next_send <= now) && p.ready && !p.closing
}

/// Whether an address from PEX is worth dialling at all: a unicast address
/// with a port (never a broadcast, multicast or unspecified one).
fn usable(a: SocketAddr) -> bool {
    let ip = a.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    a.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unicast_addresses_with_ports_are_usable() {
        let ok = |s: &str| usable(s.parse().unwrap());
        assert!(ok("127.0.0.1:6881"));
        assert!(ok("[::1]:6881"));
        assert!(!ok("0.0.0.0:6881"));
        assert!(!ok("[::]:6881"));
        assert!(!ok("255.255.255.255:6881"));
        assert!(!ok("224.0.0.1:6881"));
        assert!(!ok("[ff02::1]:6881"));
        assert!(!ok("127.0.0.1:0"));
    }
}
