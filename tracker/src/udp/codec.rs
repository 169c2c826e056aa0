//! BEP 15 packet encoding and decoding, without sockets.
//!
//! Both directions are here (client requests and tracker responses, and
//! their inverses) so that the client, scripted test trackers and the fuzz
//! targets share one definition of the wire format.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bittern_wire::{InfoHash, PeerId};

use crate::types::{AnnounceEvent, ScrapeStats};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info hashes one scrape packet may carry.
pub const MAX_SCRAPE_HASHES: usize = 74;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The packet is shorter than its action requires.
    #[error("udp tracker packet too short")]
    TooShort,
    /// The action field holds an unknown value.
    #[error("unknown udp tracker action {0}")]
    UnknownAction(u32),
    /// A connect request without the magic protocol id.
    #[error("bad udp tracker protocol id")]
    BadProtocolId,
    /// A scrape request with too many info hashes, or trailing bytes.
    #[error("bad udp tracker packet length")]
    BadLength,
}

/// A client-to-tracker packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Ask for a connection id.
    Connect {
        /// Transaction id.
        transaction_id: u32,
    },
    /// Announce one torrent.
    Announce {
        /// From the connect response.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// The torrent.
        info_hash: InfoHash,
        /// Our peer id.
        peer_id: PeerId,
        /// Bytes downloaded.
        downloaded: u64,
        /// Bytes left.
        left: u64,
        /// Bytes uploaded.
        uploaded: u64,
        /// Event.
        event: AnnounceEvent,
        /// IPv4 address to announce (0: the sender's).
        ip: u32,
        /// Key.
        key: u32,
        /// Peers wanted (-1: default).
        num_want: i32,
        /// Our peer port.
        port: u16,
    },
    /// Scrape up to [`MAX_SCRAPE_HASHES`] torrents.
    Scrape {
        /// From the connect response.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// The torrents.
        info_hashes: Vec<InfoHash>,
    },
}

/// A tracker-to-client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A new connection id.
    Connect {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Connection id for the next requests.
        connection_id: u64,
    },
    /// Announce result.
    Announce {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Seconds until the next announce.
        interval: u32,
        /// Leechers.
        leechers: u32,
        /// Seeders.
        seeders: u32,
        /// Peers: IPv4 when the request came over IPv4, IPv6 otherwise.
        peers: Vec<SocketAddr>,
    },
    /// Scrape result, in the order of the request's hashes.
    Scrape {
        /// Echoed transaction id.
        transaction_id: u32,
        /// One entry per requested hash.
        stats: Vec<ScrapeStats>,
    },
    /// The tracker refused the request.
    Error {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Human-readable reason.
        message: String,
    },
}

impl Response {
    /// The transaction id the packet answers.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::TooShort);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }
    fn id20(&mut self) -> Result<[u8; 20], CodecError> {
        let mut a = [0u8; 20];
        a.copy_from_slice(self.take(20)?);
        Ok(a)
    }
}

impl Request {
    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(98);
        match self {
            Request::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
            }
            Request::Announce {
                connection_id,
                transaction_id,
                info_hash,
                peer_id,
                downloaded,
                left,
                uploaded,
                event,
                ip,
                key,
                num_want,
                port,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(&info_hash.0);
                out.extend_from_slice(&peer_id.0);
                out.extend_from_slice(&downloaded.to_be_bytes());
                out.extend_from_slice(&left.to_be_bytes());
                out.extend_from_slice(&uploaded.to_be_bytes());
                out.extend_from_slice(&event.udp_code().to_be_bytes());
                out.extend_from_slice(&ip.to_be_bytes());
                out.extend_from_slice(&key.to_be_bytes());
                out.extend_from_slice(&num_want.to_be_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    out.extend_from_slice(&h.0);
                }
            }
        }
        out
    }

    /// Decodes a client packet (the tracker's side). Extra bytes after an
    /// announce (BEP 41 options) are ignored.
    pub fn decode(buf: &[u8]) -> Result<Request, CodecError> {
        let mut r = Reader { buf };
        let connection_id = r.u64()?;
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match action {
            ACTION_CONNECT => {
                if connection_id != PROTOCOL_ID {
                    return Err(CodecError::BadProtocolId);
                }
                Ok(Request::Connect { transaction_id })
            }
            ACTION_ANNOUNCE => Ok(Request::Announce {
                connection_id,
                transaction_id,
                info_hash: InfoHash(r.id20()?),
                peer_id: PeerId(r.id20()?),
                downloaded: r.u64()?,
                left: r.u64()?,
                uploaded: r.u64()?,
                event: AnnounceEvent::from_udp_code(r.u32()?),
                ip: r.u32()?,
                key: r.u32()?,
                num_want: r.u32()? as i32,
                port: r.u16()?,
            }),
            ACTION_SCRAPE => {
                if !r.buf.len().is_multiple_of(20) || r.buf.len() / 20 > MAX_SCRAPE_HASHES {
                    return Err(CodecError::BadLength);
                }
                let mut info_hashes = Vec::with_capacity(r.buf.len() / 20);
                while !r.buf.is_empty() {
                    info_hashes.push(InfoHash(r.id20()?));
                }
                Ok(Request::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes,
                })
            }
            other => Err(CodecError::UnknownAction(other)),
        }
    }
}

impl Response {
    /// Encodes the packet. Announce peers are written in the family given
    /// by `ipv6` (peers of the other family are left out, as a tracker
    /// answering over that family would).
    pub fn encode(&self, ipv6: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(20);
        match self {
            Response::Connect {
                transaction_id,
                connection_id,
            } => {
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            Response::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(&interval.to_be_bytes());
                out.extend_from_slice(&leechers.to_be_bytes());
                out.extend_from_slice(&seeders.to_be_bytes());
                for p in peers {
                    match (p, ipv6) {
                        (SocketAddr::V4(a), false) => {
                            out.extend_from_slice(&a.ip().octets());
                            out.extend_from_slice(&a.port().to_be_bytes());
                        }
                        (SocketAddr::V6(a), true) => {
                            out.extend_from_slice(&a.ip().octets());
                            out.extend_from_slice(&a.port().to_be_bytes());
                        }
                        _ => {}
                    }
                }
            }
            Response::Scrape {
                transaction_id,
                stats,
            } => {
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                for s in stats {
                    out.extend_from_slice(&s.complete.to_be_bytes());
                    out.extend_from_slice(&s.downloaded.to_be_bytes());
                    out.extend_from_slice(&s.incomplete.to_be_bytes());
                }
            }
            Response::Error {
                transaction_id,
                message,
            } => {
                out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(message.as_bytes());
            }
        }
        out
    }

    /// Decodes a tracker packet. `ipv6` says whether announce peers are
    /// 18-byte IPv6 entries (the request went over IPv6) or 6-byte IPv4
    /// ones. A trailing partial peer entry is ignored.
    pub fn decode(buf: &[u8], ipv6: bool) -> Result<Response, CodecError> {
        let mut r = Reader { buf };
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match action {
            ACTION_CONNECT => Ok(Response::Connect {
                transaction_id,
                connection_id: r.u64()?,
            }),
            ACTION_ANNOUNCE => {
                let interval = r.u32()?;
                let leechers = r.u32()?;
                let seeders = r.u32()?;
                let peers = if ipv6 {
                    parse_compact_v6(r.buf)
                } else {
                    parse_compact_v4(r.buf)
                };
                Ok(Response::Announce {
                    transaction_id,
                    interval,
                    leechers,
                    seeders,
                    peers,
                })
            }
            ACTION_SCRAPE => {
                let be = |c: &[u8]| u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let stats = r
                    .buf
                    .chunks_exact(12)
                    .map(|c| ScrapeStats {
                        complete: be(&c[0..4]),
                        downloaded: be(&c[4..8]),
                        incomplete: be(&c[8..12]),
                    })
                    .collect();
                Ok(Response::Scrape {
                    transaction_id,
                    stats,
                })
            }
            ACTION_ERROR => Ok(Response::Error {
                transaction_id,
                message: String::from_utf8_lossy(r.buf).into_owned(),
            }),
            other => Err(CodecError::UnknownAction(other)),
        }
    }
}

/// Parses BEP 23 compact IPv4 peers (6 bytes each); port-0 entries and a
/// trailing partial entry are dropped.
pub fn parse_compact_v4(buf: &[u8]) -> Vec<SocketAddr> {
    buf.chunks_exact(6)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .filter(|a| a.port() != 0)
        .collect()
}

/// Parses BEP 7 compact IPv6 peers (18 bytes each); port-0 entries and a
/// trailing partial entry are dropped.
pub fn parse_compact_v6(buf: &[u8]) -> Vec<SocketAddr> {
    buf.chunks_exact(18)
        .map(|c| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&c[..16]);
            let port = u16::from_be_bytes([c[16], c[17]]);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(o), port, 0, 0))
        })
        .filter(|a| a.port() != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> Request {
        Request::Announce {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 0xdead_beef,
            info_hash: InfoHash([0xaa; 20]),
            peer_id: PeerId([0xbb; 20]),
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event: AnnounceEvent::Started,
            ip: 0,
            key: 0x1234_5678,
            num_want: -1,
            port: 6881,
        }
    }

    #[test]
    fn connect_request_wire_bytes() {
        let bytes = Request::Connect {
            transaction_id: 0x0a0b_0c0d,
        }
        .encode();
        assert_eq!(
            bytes,
            [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert_eq!(Request::decode(&bad), Err(CodecError::BadProtocolId));
    }

    #[test]
    fn announce_request_layout_and_round_trip() {
        let bytes = announce().encode();
        assert_eq!(bytes.len(), 98);
        assert_eq!(&bytes[8..12], &[0, 0, 0, 1], "action");
        assert_eq!(&bytes[16..36], &[0xaa; 20]);
        assert_eq!(&bytes[80..84], &[0, 0, 0, 2], "event started");
        assert_eq!(&bytes[92..96], &[0xff; 4], "num_want -1");
        assert_eq!(&bytes[96..98], &6881u16.to_be_bytes());
        assert_eq!(Request::decode(&bytes), Ok(announce()));
        for cut in 0..bytes.len() {
            assert_eq!(
                Request::decode(&bytes[..cut]),
                Err(CodecError::TooShort),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn scrape_request_round_trip_and_limits() {
        let req = Request::Scrape {
            connection_id: 9,
            transaction_id: 10,
            info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
        };
        let bytes = req.encode();
        assert_eq!(bytes.len(), 16 + 40);
        assert_eq!(Request::decode(&bytes), Ok(req));
        assert_eq!(
            Request::decode(&bytes[..bytes.len() - 1]),
            Err(CodecError::BadLength)
        );
        let too_many = Request::Scrape {
            connection_id: 9,
            transaction_id: 10,
            info_hashes: vec![InfoHash([1; 20]); MAX_SCRAPE_HASHES + 1],
        };
        assert_eq!(
            Request::decode(&too_many.encode()),
            Err(CodecError::BadLength)
        );
    }

    #[test]
    fn responses_round_trip() {
        let v4: SocketAddr = "10.1.2.3:6881".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:51413".parse().unwrap();
        let cases = [
            Response::Connect {
                transaction_id: 1,
                connection_id: u64::MAX - 5,
            },
            Response::Scrape {
                transaction_id: 3,
                stats: vec![
                    ScrapeStats {
                        complete: 1,
                        downloaded: 2,
                        incomplete: 3,
                    },
                    ScrapeStats {
                        complete: 4,
                        downloaded: 5,
                        incomplete: 6,
                    },
                ],
            },
            Response::Error {
                transaction_id: 4,
                message: "unknown torrent".into(),
            },
        ];
        for c in cases {
            assert_eq!(Response::decode(&c.encode(false), false), Ok(c));
        }
        for ipv6 in [false, true] {
            let r = Response::Announce {
                transaction_id: 2,
                interval: 1800,
                leechers: 7,
                seeders: 8,
                peers: vec![v4, v6],
            };
            let bytes = r.encode(ipv6);
            assert_eq!(bytes.len(), 20 + if ipv6 { 18 } else { 6 });
            let Ok(Response::Announce {
                peers,
                interval,
                leechers,
                seeders,
                ..
            }) = Response::decode(&bytes, ipv6)
            else {
                panic!("announce did not decode");
            };
            assert_eq!((interval, leechers, seeders), (1800, 7, 8));
            assert_eq!(peers, vec![if ipv6 { v6 } else { v4 }]);
        }
    }

    #[test]
    fn response_decode_errors() {
        assert_eq!(
            Response::decode(&[0, 0, 0], false),
            Err(CodecError::TooShort)
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0], false),
            Err(CodecError::TooShort)
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 9, 0, 0, 0, 1], false),
            Err(CodecError::UnknownAction(9))
        );
        // Announce header cut short, and a trailing partial peer ignored.
        assert_eq!(
            Response::decode(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0], false),
            Err(CodecError::TooShort)
        );
        let mut ok = vec![0, 0, 0, 1, 0, 0, 0, 1];
        ok.extend_from_slice(&[0; 12]);
        ok.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 9, 9]);
        let Ok(Response::Announce { peers, .. }) = Response::decode(&ok, false) else {
            panic!()
        };
        assert_eq!(peers, vec!["127.0.0.1:6881".parse().unwrap()]);
    }

    #[test]
    fn compact_parsers_drop_port_zero() {
        assert_eq!(
            parse_compact_v4(&[1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 1]),
            vec!["5.6.7.8:1".parse().unwrap()]
        );
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[17] = 80;
        assert_eq!(parse_compact_v6(&v6), vec!["[::1]:80".parse().unwrap()]);
    }
}
