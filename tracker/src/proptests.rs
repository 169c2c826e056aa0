//! Property tests over the parsers that read untrusted tracker input:
//! arbitrary bytes never panic, and encoders round-trip. (The same
//! properties as the fuzz targets, run on every `cargo test`.)

use std::net::SocketAddr;

use bittern_wire::{InfoHash, PeerId};
use proptest::prelude::*;

use crate::http::{parse_announce, parse_scrape};
use crate::server::request::{parse_head, parse_query, AnnounceRequest};
use crate::types::AnnounceEvent;
use crate::udp::codec::{Request, Response};
use crate::{percent, ScrapeStats};

fn event() -> impl Strategy<Value = AnnounceEvent> {
    prop_oneof![
        Just(AnnounceEvent::None),
        Just(AnnounceEvent::Started),
        Just(AnnounceEvent::Completed),
        Just(AnnounceEvent::Stopped),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|transaction_id| Request::Connect { transaction_id }),
        (
            any::<(u64, u32, [u8; 20], [u8; 20], u64, u64, u64)>(),
            (
                event(),
                any::<u32>(),
                any::<u32>(),
                any::<i32>(),
                any::<u16>()
            )
        )
            .prop_map(
                |((c, t, h, p, d, l, u), (event, ip, key, num_want, port))| {
                    Request::Announce {
                        connection_id: c,
                        transaction_id: t,
                        info_hash: InfoHash(h),
                        peer_id: PeerId(p),
                        downloaded: d,
                        left: l,
                        uploaded: u,
                        event,
                        ip,
                        key,
                        num_want,
                        port,
                    }
                }
            ),
        (
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 20]>(), 0..74)
        )
            .prop_map(|(c, t, hs)| Request::Scrape {
                connection_id: c,
                transaction_id: t,
                info_hashes: hs.into_iter().map(InfoHash).collect(),
            }),
    ]
}

proptest! {
    #[test]
    fn udp_request_round_trips(req in request()) {
        prop_assert_eq!(Request::decode(&req.encode()), Ok(req));
    }

    #[test]
    fn udp_announce_response_round_trips(
        t in any::<u32>(), i in any::<u32>(), l in any::<u32>(), s in any::<u32>(),
        peers in proptest::collection::vec((any::<[u8; 4]>(), 1..=u16::MAX), 0..50),
    ) {
        let peers: Vec<SocketAddr> = peers.into_iter().map(|(ip, port)| SocketAddr::from((ip, port))).collect();
        let r = Response::Announce { transaction_id: t, interval: i, leechers: l, seeders: s, peers };
        prop_assert_eq!(Response::decode(&r.encode(false), false), Ok(r));
    }

    #[test]
    fn udp_scrape_response_round_trips(t in any::<u32>(), stats in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..80)) {
        let stats = stats.into_iter().map(|(c, d, i)| ScrapeStats { complete: c, downloaded: d, incomplete: i }).collect();
        let r = Response::Scrape { transaction_id: t, stats };
        prop_assert_eq!(Response::decode(&r.encode(false), false), Ok(r));
    }

    #[test]
    fn udp_decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300), v6 in any::<bool>()) {
        let _ = Response::decode(&buf, v6);
        let _ = Request::decode(&buf);
    }

    #[test]
    fn http_parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_announce(&buf, 200);
        let _ = parse_scrape(&buf, &[], 200);
        let _ = parse_head(&buf, 200);
        if let Some(q) = parse_query(&buf) {
            let _ = AnnounceRequest::from_query(&q);
        }
    }

    #[test]
    fn http_parsers_never_panic_on_bencode_like_input(
        parts in proptest::collection::vec(prop_oneof![
            Just(&b"d"[..]), Just(&b"e"[..]), Just(&b"l"[..]), Just(&b"i-1e"[..]), Just(&b"i99999999999e"[..]),
            Just(&b"5:peers"[..]), Just(&b"6:peers6"[..]), Just(&b"8:interval"[..]), Just(&b"14:failure reason"[..]),
            Just(&b"5:files"[..]), Just(&b"2:ip"[..]), Just(&b"4:port"[..]), Just(&b"6:abcdef"[..]), Just(&b"0:"[..]),
        ], 0..30),
    ) {
        let buf: Vec<u8> = parts.concat();
        let _ = parse_announce(&buf, 1 << 16);
        let _ = parse_scrape(&buf, &[], 1 << 16);
    }

    #[test]
    fn percent_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(percent::decode(percent::encode(&bytes).as_bytes()), Some(bytes));
    }
}
