//! Answering queries: ping, find_node, get_peers, announce_peer, and BEP
//! 51 sample_infohashes.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Node, Purpose, MAX_VALUES};
use super::{Transmit, VERSION};
use crate::id::NodeId;
use crate::krpc::{
    Body, Message, NodeInfo, Query, QueryKind, Response, Want, ERR_METHOD_UNKNOWN, ERR_PROTOCOL,
};
use crate::routing::{Inserted, K};

/// Peers in a get_peers reply to a querier whose address is not proven
/// (8 x 6 bytes: with 8 nodes, about 1.2 times a find_node reply).
const MAX_VALUES_UNPROVEN: usize = 8;
/// Info hashes in one sample_infohashes reply (20 x 20 bytes, about the
/// size of a get_peers reply).
const MAX_SAMPLES: usize = 20;
/// BEP 51 `interval`: our store changes slowly; libtorrent's default.
const SAMPLE_INTERVAL_SECS: i64 = 6 * 3600;

/// Largest reply we send to a query (from any source: a UDP source
/// address is unverified). `get_peers` values and BEP 51 samples are cut
/// to fit: 50 IPv4 peers and 8 nodes fit (713 bytes), 50 IPv6 peers do not
/// (1,473). With the smallest get_peers query (94 bytes) this bounds the
/// amplification at about 8.5 times (`tests/attack.rs` measures it).
pub(super) const MAX_REPLY_BYTES: usize = 800;

impl Node {
    fn reply(&mut self, to: SocketAddr, tid: Vec<u8>, body: Body) {
        let mut msg = Message {
            tid,
            version: Some(VERSION.to_vec()),
            ip: Some(to),
            read_only: false,
            body,
        };
        let mut bytes = msg.encode();
        while bytes.len() > MAX_REPLY_BYTES {
            let Body::Response(r) = &mut msg.body else {
                break;
            };
            // each value or sample costs 8-21 bytes: drop enough at once
            let over = bytes.len() - MAX_REPLY_BYTES;
            if !r.values.is_empty() {
                let per = if r.values[0].is_ipv4() { 8 } else { 21 };
                let cut = over.div_ceil(per).min(r.values.len());
                r.values.truncate(r.values.len() - cut);
            } else if !r.samples.is_empty() {
                let cut = over.div_ceil(20).min(r.samples.len());
                r.samples.truncate(r.samples.len() - cut);
            } else {
                break;
            }
            bytes = msg.encode();
        }
        self.out.push_back(Transmit { to, bytes });
    }

    fn nodes_for(
        &self,
        target: &NodeId,
        from: SocketAddr,
        want: Want,
        now: Instant,
    ) -> (Vec<NodeInfo>, Vec<NodeInfo>) {
        let (v4, v6) = if want.v4 || want.v6 {
            (want.v4, want.v6)
        } else {
            (from.is_ipv4(), from.is_ipv6())
        };
        let mut all = self.table.closest(target, K * 2, now);
        // BEP 32: the other family's contacts, from a dual-stack sibling
        // node ([`Node::set_other_family`]), for a querier that wants them
        if (want.v4 || want.v6) && !self.other_family.is_empty() {
            let mut other = self.other_family.clone();
            other.sort_by_key(|n| target.distance(&n.id));
            all.extend(other.into_iter().take(K));
        }
        let pick = |ipv4: bool| -> Vec<NodeInfo> {
            all.iter()
                .filter(|n| n.addr.is_ipv4() == ipv4 && n.addr != from)
                .take(K)
                .copied()
                .collect()
        };
        (
            if v4 { pick(true) } else { Vec::new() },
            if v6 { pick(false) } else { Vec::new() },
        )
    }

    pub(super) fn on_query(
        &mut self,
        from: SocketAddr,
        tid: Vec<u8>,
        read_only: bool,
        q: Query,
        now: Instant,
    ) {
        let own = self.id();
        let body = match q.kind {
            QueryKind::Ping => Body::Response(Response {
                id: own,
                ..Response::default()
            }),
            QueryKind::FindNode { target, want } => {
                let (nodes, nodes6) = self.nodes_for(&target, from, want, now);
                Body::Response(Response {
                    id: own,
                    nodes,
                    nodes6,
                    ..Response::default()
                })
            }
            QueryKind::GetPeers { info_hash, want } => {
                let (nodes, nodes6) = self.nodes_for(&info_hash.into(), from, want, now);
                // No amplification: a querier that never answered one of
                // our queries from this address (so may be a spoofed
                // source) gets a reply about the size of a find_node reply.
                let proven = self
                    .table
                    .get(&q.id)
                    .is_some_and(|e| e.info.addr == from && e.last_response.is_some());
                let max = if proven {
                    MAX_VALUES
                } else {
                    MAX_VALUES_UNPROVEN
                };
                let values = self.peers.get(&info_hash, max, now, &mut self.rng);
                Body::Response(Response {
                    id: own,
                    nodes,
                    nodes6,
                    values,
                    token: Some(self.tokens.make(from.ip())),
                    ..Response::default()
                })
            }
            QueryKind::SampleInfohashes { target } => {
                let (nodes, nodes6) = self.nodes_for(&target, from, Want::default(), now);
                Body::Response(Response {
                    id: own,
                    nodes,
                    nodes6,
                    samples: self.peers.sample(MAX_SAMPLES, &mut self.rng),
                    num: Some(i64::try_from(self.peers.torrents()).unwrap_or(i64::MAX)),
                    interval: Some(SAMPLE_INTERVAL_SECS),
                    ..Response::default()
                })
            }
            QueryKind::AnnouncePeer {
                info_hash,
                port,
                token,
                implied_port,
            } => {
                if !self.tokens.verify(from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    Body::Error {
                        code: ERR_PROTOCOL,
                        message: "bad token".into(),
                    }
                } else {
                    let port = if implied_port { from.port() } else { port };
                    if port != 0 {
                        self.peers
                            .announce(info_hash, SocketAddr::new(from.ip(), port), now);
                    }
                    Body::Response(Response {
                        id: own,
                        ..Response::default()
                    })
                }
            }
            QueryKind::Other { .. } => Body::Error {
                code: ERR_METHOD_UNKNOWN,
                message: "method unknown".into(),
            },
        };
        self.stats.queries_answered += 1;
        self.reply(from, tid, body);
        if read_only {
            return;
        }
        let info = NodeInfo {
            id: q.id,
            addr: from,
        };
        if !self.id_allowed(&info) {
            return;
        }
        if self.table.insert(info, false, now) == Inserted::Rejected
            && self.table.would_accept(&q.id, now)
            && !self.table.ip_full(from.ip())
        {
            // verify the querier answers before it enters the table
            let already = self
                .pending
                .values()
                .any(|p| p.to == from && p.purpose == Purpose::Ping);
            if !already {
                self.send_query(from, Some(q.id), QueryKind::Ping, Purpose::Ping, now);
            }
        }
    }
}
