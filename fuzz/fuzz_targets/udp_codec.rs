//! UDP tracker codec (BEP 15): never panics; a decoded request or response
//! re-encodes to a packet that decodes to the same value, and to the input
//! bytes themselves where the format has one spelling.
#![no_main]

use bittern_tracker::udp::codec::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        let out = req.encode();
        assert_eq!(Request::decode(&out).as_ref(), Ok(&req));
        match &req {
            // Announce ignores trailing BEP 41 options, connect anything
            // after its 16 bytes. An unknown event code (not 0-3) reads as
            // "none" (code 0), like other trackers do.
            Request::Announce { .. } => {
                let mut input = data[..out.len()].to_vec();
                let code = u32::from_be_bytes([input[80], input[81], input[82], input[83]]);
                if code > 3 {
                    input[80..84].fill(0);
                }
                assert_eq!(input, out);
            }
            Request::Connect { .. } => assert_eq!(&data[..out.len()], &out[..]),
            Request::Scrape { .. } => assert_eq!(&out[..], data),
        }
    }
    for ipv6 in [false, true] {
        if let Ok(resp) = Response::decode(data, ipv6) {
            let out = resp.encode(ipv6);
            let again = Response::decode(&out, ipv6);
            match (&resp, &again) {
                // Lossy UTF-8 decoding may grow the message once; after
                // that it is a fixed point.
                (Response::Error { .. }, Ok(a)) => {
                    assert_eq!(Response::decode(&a.encode(ipv6), ipv6).as_ref(), Ok(a));
                }
                _ => assert_eq!(again.as_ref(), Ok(&resp)),
            }
            if let Response::Announce { peers, .. } = &resp {
                assert!(peers.iter().all(|p| p.port() != 0 && p.is_ipv6() == ipv6));
                assert!(out.len() <= data.len());
            }
        }
    }
});
