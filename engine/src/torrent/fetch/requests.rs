//! Asking the fetch's peers for metadata pieces: which piece of whom,
//! spread over the peers that have the metadata, one peer at a time after
//! a hash failure with several contributors.

use std::time::Instant;

use bittern_wire::{Extension, MetadataAssembler, MetadataMessage};
use log::warn;

use super::{MetadataFetch, MAX_PER_PEER};
use crate::peer::PeerCommand;
use crate::picker::PeerKey;

impl MetadataFetch {
    /// Asks every usable peer for pieces, spreading them so that several
    /// peers fetch at once.
    pub(super) fn request_all(&mut self) {
        if self.finished || self.paused {
            return;
        }
        if self.layers.is_some() {
            return self.request_layers();
        }
        if self.assembler.is_none() {
            let Some(size) = self
                .peers
                .values()
                .filter(|p| p.ready && !p.closing)
                .find_map(|p| p.size)
            else {
                return;
            };
            match MetadataAssembler::new(self.metadata_hash(), size) {
                Ok(a) => self.assembler = Some(a),
                Err(e) => {
                    warn!("{}: {e}", self.short());
                    return;
                }
            }
        }
        let Some(a) = self.assembler.as_mut() else {
            return;
        };
        let size = a.size();
        let mut usable: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready && !p.closing && p.size == Some(size))
            .map(|(k, _)| *k)
            .collect();
        usable.sort();
        if usable.is_empty() {
            return;
        }
        if self.single_source {
            // The peer already fetching, else the first one; a new source
            // starts from nothing, so that every piece of an attempt comes
            // from one peer and a failure names it.
            let busy = usable.iter().copied().find(|k| a.in_flight(k) > 0);
            let source = busy.unwrap_or(usable[0]);
            if self.source != Some(source) {
                self.source = Some(source);
                if let Ok(fresh) = MetadataAssembler::new(a.hash(), size) {
                    *a = fresh;
                }
            }
            usable = vec![source];
            a.set_per_peer_limit(MAX_PER_PEER);
        } else {
            let per = a
                .piece_count()
                .div_ceil(usable.len())
                .clamp(1, MAX_PER_PEER);
            a.set_per_peer_limit(per);
        }
        let now = Instant::now();
        for key in usable {
            let had = a.in_flight(&key);
            let mut asked = Vec::new();
            while let Some(piece) = a.next_request(&key) {
                asked.push(piece);
            }
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            if !asked.is_empty() && had == 0 {
                p.last_progress = now;
            }
            for piece in asked {
                let mut payload = Vec::new();
                MetadataMessage::Request { piece }.encode(&mut payload);
                let cmd = PeerCommand::Extended {
                    ext: Extension::UtMetadata,
                    payload,
                };
                if p.commands.try_send(cmd).is_err() {
                    p.closing = true;
                    p.socket.cut();
                    a.peer_gone(&key);
                    break;
                }
            }
        }
        self.arm_tick();
    }
}
