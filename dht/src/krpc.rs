//! KRPC messages (BEP 5): a sans-IO codec.
//!
//! [`Message::decode`] turns one UDP payload into a typed message or a
//! [`DecodeError`]; it never panics, whatever the bytes (see the garbage and
//! truncation tests). [`Message::encode`] writes canonical bencode.
//!
//! A response does not name the query it answers, so [`Response`] carries
//! every field any of the four responses can hold; the caller knows from the
//! transaction id which query it sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bittern_wire::bencode::{self, Limits, Value};
use bittern_wire::InfoHash;
use std::collections::BTreeMap;
use thiserror::Error;

use crate::id::NodeId;

/// Longest transaction id we accept (and so echo back): libtorrent sends 2
/// bytes, others 4; echoing long ids would let a querier amplify.
pub const MAX_TID_LEN: usize = 16;
/// Longest token we accept or store.
pub const MAX_TOKEN_LEN: usize = 64;
/// Largest datagram the decoder reads.
pub const MAX_PACKET: usize = 4096;

/// Compact IPv4 node info: id, address, port.
pub const NODE_V4_LEN: usize = 26;
/// Compact IPv6 node info (BEP 32): id, address, port.
pub const NODE_V6_LEN: usize = 38;

/// KRPC error code 201: generic error.
pub const ERR_GENERIC: i64 = 201;
/// KRPC error code 203: protocol error (bad arguments, bad token).
pub const ERR_PROTOCOL: i64 = 203;
/// KRPC error code 204: method unknown.
pub const ERR_METHOD_UNKNOWN: i64 = 204;

/// Why a datagram is not a KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not bencode (or over the size limits).
    #[error("bad bencode")]
    Bencode(#[from] bencode::Error),
    /// The top value is not a dictionary.
    #[error("message is not a dictionary")]
    NotDict,
    /// A required key is missing or has the wrong type.
    #[error("missing or malformed key {0:?}")]
    Field(&'static str),
    /// `y` is not `q`, `r` or `e`.
    #[error("unknown message type")]
    UnknownType,
    /// A compact node or peer list whose length is not a multiple of its
    /// entry size.
    #[error("compact list {0:?} has a partial entry")]
    Compact(&'static str),
}

/// A node's contact: id and UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id, chosen by the querier and echoed in the reply.
    pub tid: Vec<u8>,
    /// The sender's client version (`v`), if given.
    pub version: Option<Vec<u8>>,
    /// BEP 42 `ip`: in a reply, the querier's address as the replier saw it.
    pub ip: Option<SocketAddr>,
    /// BEP 43 `ro`: the querier is read-only and must not enter routing tables.
    pub read_only: bool,
    /// Query, response or error.
    pub body: Body,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y = q`.
    Query(Query),
    /// `y = r`.
    Response(Response),
    /// `y = e`.
    Error {
        /// Error code (201-204).
        code: i64,
        /// Human-readable text.
        message: String,
    },
}

/// A query: the querier's id and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The querying node's id.
    pub id: NodeId,
    /// Method and arguments.
    pub kind: QueryKind,
}

/// The four BEP 5 methods, plus any other method name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKind {
    /// `ping`.
    Ping,
    /// `find_node`.
    FindNode {
        /// The id sought.
        target: NodeId,
        /// BEP 32 `want`: `n4` and/or `n6`.
        want: Want,
    },
    /// `get_peers`.
    GetPeers {
        /// The torrent.
        info_hash: InfoHash,
        /// BEP 32 `want`.
        want: Want,
    },
    /// `announce_peer`.
    AnnouncePeer {
        /// The torrent.
        info_hash: InfoHash,
        /// The port the peer listens on (ignored when `implied_port`).
        port: u16,
        /// The token from an earlier `get_peers` reply.
        token: Vec<u8>,
        /// Use the UDP source port instead of `port`.
        implied_port: bool,
    },
    /// BEP 51 `sample_infohashes`.
    SampleInfohashes {
        /// Where to take the returned `nodes` from.
        target: NodeId,
    },
    /// A method we do not implement (answered with error 204).
    Other {
        /// The method name.
        method: Vec<u8>,
    },
}

/// BEP 32 `want`: which address families the querier wants nodes of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// `n4` given.
    pub v4: bool,
    /// `n6` given.
    pub v6: bool,
}

/// The fields a response may carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The replying node's id.
    pub id: NodeId,
    /// `nodes`: compact IPv4 contacts.
    pub nodes: Vec<NodeInfo>,
    /// `nodes6` (BEP 32): compact IPv6 contacts.
    pub nodes6: Vec<NodeInfo>,
    /// `values`: compact peers.
    pub values: Vec<SocketAddr>,
    /// `token`, for a later `announce_peer`.
    pub token: Option<Vec<u8>>,
    /// BEP 51 `samples`: info hashes the node stores peers for.
    pub samples: Vec<InfoHash>,
    /// BEP 51 `num`: how many info hashes the node stores in total.
    pub num: Option<i64>,
    /// BEP 51 `interval`: seconds before asking the node again.
    pub interval: Option<i64>,
}

fn limits() -> Limits {
    Limits {
        max_depth: 8,
        max_len: MAX_PACKET,
        max_string_len: MAX_PACKET,
        max_items: 1024,
    }
}

fn id20(v: Option<&Value>, key: &'static str) -> Result<[u8; 20], DecodeError> {
    v.and_then(Value::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .ok_or(DecodeError::Field(key))
}

fn bytes_of<'a>(d: &'a Value, key: &'static str) -> Result<&'a [u8], DecodeError> {
    d.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .ok_or(DecodeError::Field(key))
}

fn want_of(args: &Value) -> Want {
    let mut w = Want::default();
    if let Some(list) = args.get(b"want").and_then(Value::as_list) {
        for v in list {
            match v.as_bytes() {
                Some(b"n4") => w.v4 = true,
                Some(b"n6") => w.v6 = true,
                _ => {}
            }
        }
    }
    w
}

/// Decodes a compact address: 6 bytes (IPv4) or 18 bytes (IPv6).
pub fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be_bytes([b[4], b[5]]),
            )))
        }
        18 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Appends the compact form of `addr` (6 or 18 bytes).
pub fn encode_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Decodes a compact node list of `entry` bytes per node (26 or 38).
/// Entries with port 0 are skipped (nobody can be reached there).
///
/// # Errors
/// [`DecodeError::Compact`] if the length is not a multiple of `entry`.
pub fn decode_nodes(
    b: &[u8],
    entry: usize,
    key: &'static str,
) -> Result<Vec<NodeInfo>, DecodeError> {
    if entry < 26 || !b.len().is_multiple_of(entry) {
        return Err(DecodeError::Compact(key));
    }
    let mut out = Vec::with_capacity(b.len() / entry);
    for chunk in b.chunks_exact(entry) {
        let mut id = [0u8; 20];
        id.copy_from_slice(&chunk[..20]);
        if let Some(addr) = decode_addr(&chunk[20..]) {
            if addr.port() != 0 {
                out.push(NodeInfo {
                    id: NodeId(id),
                    addr,
                });
            }
        }
    }
    Ok(out)
}

/// Compact node list: 26 bytes per IPv4 node, 38 per IPv6 node (callers
/// pass nodes of one family).
pub fn encode_nodes(nodes: &[NodeInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * NODE_V6_LEN);
    for n in nodes {
        out.extend_from_slice(&n.id.0);
        encode_addr(&n.addr, &mut out);
    }
    out
}

impl Message {
    /// Parses one datagram.
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not a well-formed KRPC message.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let v = bencode::decode_with(buf, &limits())?;
        if v.as_dict().is_none() {
            return Err(DecodeError::NotDict);
        }
        let tid = bytes_of(&v, "t")?;
        if tid.len() > MAX_TID_LEN {
            return Err(DecodeError::Field("t"));
        }
        let version = v.get(b"v").and_then(Value::as_bytes).map(|b| b.to_vec());
        let ip = v.get(b"ip").and_then(Value::as_bytes).and_then(decode_addr);
        let read_only = v.get(b"ro").and_then(Value::as_int) == Some(1);
        let body = match bytes_of(&v, "y")? {
            b"q" => Body::Query(decode_query(&v)?),
            b"r" => Body::Response(decode_response(&v)?),
            b"e" => {
                let list = v
                    .get(b"e")
                    .and_then(Value::as_list)
                    .ok_or(DecodeError::Field("e"))?;
                let code = list
                    .first()
                    .and_then(Value::as_int)
                    .ok_or(DecodeError::Field("e"))?;
                let message = list
                    .get(1)
                    .and_then(Value::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Body::Error { code, message }
            }
            _ => return Err(DecodeError::UnknownType),
        };
        Ok(Message {
            tid: tid.to_vec(),
            version,
            ip,
            read_only,
            body,
        })
    }

    /// Canonical bencoding of this message.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        d.insert(b"t".to_vec(), Value::bytes(self.tid.clone()));
        if let Some(v) = &self.version {
            d.insert(b"v".to_vec(), Value::bytes(v.clone()));
        }
        if let Some(ip) = &self.ip {
            let mut b = Vec::new();
            encode_addr(ip, &mut b);
            d.insert(b"ip".to_vec(), Value::Bytes(b));
        }
        if self.read_only {
            d.insert(b"ro".to_vec(), Value::Int(1));
        }
        match &self.body {
            Body::Query(q) => {
                d.insert(b"y".to_vec(), Value::from("q"));
                let (method, args) = encode_query(q);
                d.insert(b"q".to_vec(), Value::bytes(method.to_vec()));
                d.insert(b"a".to_vec(), Value::Dict(args));
            }
            Body::Response(r) => {
                d.insert(b"y".to_vec(), Value::from("r"));
                d.insert(b"r".to_vec(), Value::Dict(encode_response(r)));
            }
            Body::Error { code, message } => {
                d.insert(b"y".to_vec(), Value::from("e"));
                d.insert(
                    b"e".to_vec(),
                    Value::List(vec![Value::Int(*code), Value::from(message.as_str())]),
                );
            }
        }
        bencode::encode(&Value::Dict(d))
    }
}

fn decode_query(v: &Value) -> Result<Query, DecodeError> {
    let method = bytes_of(v, "q")?;
    let args = v
        .get(b"a")
        .filter(|a| a.as_dict().is_some())
        .ok_or(DecodeError::Field("a"))?;
    let id = NodeId(id20(args.get(b"id"), "id")?);
    let kind = match method {
        b"ping" => QueryKind::Ping,
        b"find_node" => QueryKind::FindNode {
            target: NodeId(id20(args.get(b"target"), "target")?),
            want: want_of(args),
        },
        b"get_peers" => QueryKind::GetPeers {
            info_hash: InfoHash(id20(args.get(b"info_hash"), "info_hash")?),
            want: want_of(args),
        },
        b"announce_peer" => {
            let info_hash = InfoHash(id20(args.get(b"info_hash"), "info_hash")?);
            let implied_port = args
                .get(b"implied_port")
                .and_then(Value::as_int)
                .unwrap_or(0)
                != 0;
            let port = match args.get(b"port").and_then(Value::as_int) {
                Some(p) => u16::try_from(p).map_err(|_| DecodeError::Field("port"))?,
                None if implied_port => 0,
                None => return Err(DecodeError::Field("port")),
            };
            let token = bytes_of(args, "token")?;
            if token.len() > MAX_TOKEN_LEN {
                return Err(DecodeError::Field("token"));
            }
            QueryKind::AnnouncePeer {
                info_hash,
                port,
                token: token.to_vec(),
                implied_port,
            }
        }
        b"sample_infohashes" => QueryKind::SampleInfohashes {
            target: NodeId(id20(args.get(b"target"), "target")?),
        },
        other => QueryKind::Other {
            method: other.to_vec(),
        },
    };
    Ok(Query { id, kind })
}

fn decode_response(v: &Value) -> Result<Response, DecodeError> {
    let r = v
        .get(b"r")
        .filter(|r| r.as_dict().is_some())
        .ok_or(DecodeError::Field("r"))?;
    let id = NodeId(id20(r.get(b"id"), "id")?);
    let nodes = match r.get(b"nodes").and_then(Value::as_bytes) {
        Some(b) => decode_nodes(b, NODE_V4_LEN, "nodes")?,
        None => Vec::new(),
    };
    let nodes6 = match r.get(b"nodes6").and_then(Value::as_bytes) {
        Some(b) => decode_nodes(b, NODE_V6_LEN, "nodes6")?,
        None => Vec::new(),
    };
    let mut values = Vec::new();
    if let Some(list) = r.get(b"values").and_then(Value::as_list) {
        for item in list {
            // a peer of the wrong size is skipped, not fatal: the rest are usable
            if let Some(addr) = item.as_bytes().and_then(decode_addr) {
                if addr.port() != 0 {
                    values.push(addr);
                }
            }
        }
    }
    let token = match r.get(b"token").and_then(Value::as_bytes) {
        Some(t) if t.len() > MAX_TOKEN_LEN => return Err(DecodeError::Field("token")),
        Some(t) => Some(t.to_vec()),
        None => None,
    };
    let mut samples = Vec::new();
    if let Some(b) = r.get(b"samples").and_then(Value::as_bytes) {
        if b.len() % 20 != 0 {
            return Err(DecodeError::Compact("samples"));
        }
        for c in b.chunks_exact(20) {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            samples.push(InfoHash(h));
        }
    }
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
        samples,
        num: r.get(b"num").and_then(Value::as_int),
        interval: r.get(b"interval").and_then(Value::as_int),
    })
}

fn encode_query(q: &Query) -> (&[u8], BTreeMap<Vec<u8>, Value>) {
    let mut a = BTreeMap::new();
    a.insert(b"id".to_vec(), Value::bytes(q.id.0.to_vec()));
    let want_list = |w: &Want| {
        let mut l = Vec::new();
        if w.v4 {
            l.push(Value::from("n4"));
        }
        if w.v6 {
            l.push(Value::from("n6"));
        }
        l
    };
    let method: &[u8] = match &q.kind {
        QueryKind::Ping => b"ping",
        QueryKind::FindNode { target, want } => {
            a.insert(b"target".to_vec(), Value::bytes(target.0.to_vec()));
            if want.v4 || want.v6 {
                a.insert(b"want".to_vec(), Value::List(want_list(want)));
            }
            b"find_node"
        }
        QueryKind::GetPeers { info_hash, want } => {
            a.insert(b"info_hash".to_vec(), Value::bytes(info_hash.0.to_vec()));
            if want.v4 || want.v6 {
                a.insert(b"want".to_vec(), Value::List(want_list(want)));
            }
            b"get_peers"
        }
        QueryKind::AnnouncePeer {
            info_hash,
            port,
            token,
            implied_port,
        } => {
            a.insert(b"info_hash".to_vec(), Value::bytes(info_hash.0.to_vec()));
            a.insert(b"port".to_vec(), Value::Int(i64::from(*port)));
            a.insert(b"token".to_vec(), Value::bytes(token.clone()));
            if *implied_port {
                a.insert(b"implied_port".to_vec(), Value::Int(1));
            }
            b"announce_peer"
        }
        QueryKind::SampleInfohashes { target } => {
            a.insert(b"target".to_vec(), Value::bytes(target.0.to_vec()));
            b"sample_infohashes"
        }
        QueryKind::Other { method } => method,
    };
    (method, a)
}

fn encode_response(r: &Response) -> BTreeMap<Vec<u8>, Value> {
    let mut d = BTreeMap::new();
    d.insert(b"id".to_vec(), Value::bytes(r.id.0.to_vec()));
    if !r.nodes.is_empty() {
        d.insert(b"nodes".to_vec(), Value::Bytes(encode_nodes(&r.nodes)));
    }
    if !r.nodes6.is_empty() {
        d.insert(b"nodes6".to_vec(), Value::Bytes(encode_nodes(&r.nodes6)));
    }
    if !r.values.is_empty() {
        let list = r
            .values
            .iter()
            .map(|a| {
                let mut b = Vec::new();
                encode_addr(a, &mut b);
                Value::Bytes(b)
            })
            .collect();
        d.insert(b"values".to_vec(), Value::List(list));
    }
    if let Some(t) = &r.token {
        d.insert(b"token".to_vec(), Value::bytes(t.clone()));
    }
    if !r.samples.is_empty() {
        let b: Vec<u8> = r.samples.iter().flat_map(|h| h.0).collect();
        d.insert(b"samples".to_vec(), Value::Bytes(b));
    }
    if let Some(n) = r.num {
        d.insert(b"num".to_vec(), Value::Int(n));
    }
    if let Some(i) = r.interval {
        d.insert(b"interval".to_vec(), Value::Int(i));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn samples() -> Vec<Message> {
        let id = NodeId(*b"abcdefghij0123456789");
        let ih = InfoHash(*b"mnopqrstuvwxyz123456");
        let q = |kind| Message {
            tid: b"aa".to_vec(),
            version: None,
            ip: None,
            read_only: false,
            body: Body::Query(Query { id, kind }),
        };
        let v6: SocketAddr = "[::1]:6881".parse().unwrap();
        vec![
            q(QueryKind::Ping),
            q(QueryKind::FindNode {
                target: NodeId([7; 20]),
                want: Want { v4: true, v6: true },
            }),
            q(QueryKind::GetPeers {
                info_hash: ih,
                want: Want::default(),
            }),
            q(QueryKind::SampleInfohashes {
                target: NodeId([6; 20]),
            }),
            q(QueryKind::AnnouncePeer {
                info_hash: ih,
                port: 6881,
                token: b"aoeusnth".to_vec(),
                implied_port: true,
            }),
            Message {
                tid: vec![0, 1],
                version: Some(VERSION_FOR_TEST.to_vec()),
                ip: Some(v4(9)),
                read_only: false,
                body: Body::Response(Response {
                    id,
                    nodes: vec![
                        NodeInfo {
                            id: NodeId([1; 20]),
                            addr: v4(1),
                        },
                        NodeInfo {
                            id: NodeId([2; 20]),
                            addr: v4(2),
                        },
                    ],
                    nodes6: vec![NodeInfo {
                        id: NodeId([3; 20]),
                        addr: v6,
                    }],
                    values: vec![v4(6881), v6],
                    token: Some(b"tok".to_vec()),
                    samples: vec![InfoHash([8; 20]), InfoHash([9; 20])],
                    num: Some(2),
                    interval: Some(21600),
                }),
            },
            Message {
                tid: b"xy".to_vec(),
                version: None,
                ip: None,
                read_only: true,
                body: Body::Error {
                    code: 201,
                    message: "A Generic Error Ocurred".into(),
                },
            },
        ]
    }

    const VERSION_FOR_TEST: &[u8] = b"LT\x02\x08";

    #[test]
    fn bep5_examples_decode() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::decode(ping).unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query {
                id: NodeId(*b"abcdefghij0123456789"),
                kind: QueryKind::Ping
            })
        );
        assert_eq!(
            m.encode(),
            ping.to_vec(),
            "canonical re-encoding is byte-identical"
        );
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = Message::decode(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into()
            }
        );
        assert_eq!(m.encode(), err.to_vec());
        let ann = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = Message::decode(ann).unwrap();
        assert!(matches!(
            m.body,
            Body::Query(Query {
                kind: QueryKind::AnnouncePeer {
                    port: 6881,
                    implied_port: false,
                    ..
                },
                ..
            })
        ));
        assert_eq!(m.encode(), ann.to_vec());
        let peers = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
        let m = Message::decode(peers).unwrap();
        let Body::Response(r) = &m.body else {
            panic!("not a response")
        };
        assert_eq!(r.values.len(), 2);
        assert_eq!(
            r.values[0],
            SocketAddr::from(([b'a', b'x', b'j', b'e'], u16::from_be_bytes([b'.', b'u'])))
        );
        assert_eq!(m.encode(), peers.to_vec());
    }

    #[test]
    fn round_trips() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(
                Message::decode(&bytes).as_ref(),
                Ok(&m),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn compact_sizes() {
        let n4 = NodeInfo {
            id: NodeId([9; 20]),
            addr: v4(80),
        };
        let n6 = NodeInfo {
            id: NodeId([9; 20]),
            addr: "[::1]:80".parse().unwrap(),
        };
        assert_eq!(encode_nodes(&[n4]).len(), NODE_V4_LEN);
        assert_eq!(encode_nodes(&[n6]).len(), NODE_V6_LEN);
        assert_eq!(
            decode_nodes(&encode_nodes(&[n4, n4]), NODE_V4_LEN, "nodes"),
            Ok(vec![n4, n4])
        );
        assert_eq!(
            decode_nodes(&encode_nodes(&[n6]), NODE_V6_LEN, "nodes6"),
            Ok(vec![n6])
        );
        assert_eq!(
            decode_nodes(&[0; 25], NODE_V4_LEN, "nodes"),
            Err(DecodeError::Compact("nodes"))
        );
        // port 0 cannot be contacted: skipped
        let zero = NodeInfo {
            id: NodeId([9; 20]),
            addr: v4(0),
        };
        assert_eq!(
            decode_nodes(&encode_nodes(&[zero, n4]), NODE_V4_LEN, "nodes"),
            Ok(vec![n4])
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for m in samples() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Message::decode(&bytes[..cut]).is_err(),
                    "prefix of {cut} bytes decoded"
                );
            }
        }
    }

    #[test]
    fn malformed_fields_are_rejected() {
        let bad: &[&[u8]] = &[
            b"",
            b"le",
            b"i1e",
            b"de",
            b"d1:t2:aa1:y1:qe",                                     // no q/a
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",               // short id
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:ze", // bad y
            b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re", // partial node
            b"d1:eli201ee1:t17:aaaaaaaaaaaaaaaaa1:y1:ee",             // tid too long
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234565:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            b"d1:eli201ee1:t2:aa1:y1:ee trailing",
        ];
        for b in bad {
            assert!(
                Message::decode(b).is_err(),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        // implied_port without port is fine
        let ok = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234565:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe";
        assert!(Message::decode(ok).is_ok());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(idx in 0usize..7, pos in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = samples()[idx].encode();
            let p = pos % bytes.len();
            bytes[p] = byte;
            if let Ok(m) = Message::decode(&bytes) {
                // whatever decodes re-encodes and decodes to the same message
                prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
            }
        }
    }
}
