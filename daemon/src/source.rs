//! What `torrent-add` adds: a base64 `metainfo`, or a `filename` that is a
//! magnet link, an http(s) URL of a `.torrent` (fetched, bounded in size
//! and time) or a path on the daemon's machine.

use std::io::Read;
use std::time::Duration;

use bittern_wire::{Magnet, Metainfo};
use serde_json::Value;

use crate::state::AddSource;

/// Transmission's answer to anything that is not a torrent.
pub const CORRUPT: &str = "invalid or corrupt torrent file";
/// The largest `.torrent` fetched from a URL (as the RPC body limit).
pub const MAX_TORRENT_URL_BYTES: u64 = 16 << 20;
/// How long fetching a `.torrent` from a URL may take in all.
pub const URL_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the source of `torrent-add`'s arguments.
///
/// # Errors
/// The message for the client: no source, a corrupt torrent, a magnet
/// link without an info hash (`btih` or `btmh`), a URL that could not be
/// fetched. A `btmh`-only (v2-only, BEP 52) link is accepted: the torrent
/// is known by its v2 hash truncated to 20 bytes, its name on the wire.
pub fn add_source(args: &serde_json::Map<String, Value>) -> Result<AddSource, String> {
    let bytes = if let Some(b64) = args.get("metainfo").and_then(Value::as_str) {
        let clean: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        data_encoding::BASE64
            .decode(&clean)
            .map_err(|_| CORRUPT.to_string())?
    } else if let Some(name) = args.get("filename").and_then(Value::as_str) {
        let name = name.trim();
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("magnet:") {
            let link = Magnet::parse(name).map_err(|e| format!("invalid magnet link: {e}"))?;
            if link.info_hash.is_none() && link.info_hash_v2.is_none() {
                return Err("the magnet link has no info hash (btih or btmh)".into());
            }
            return Ok(AddSource::Magnet(link));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            fetch_url(name)?
        } else {
            std::fs::read(name).map_err(|_| CORRUPT.to_string())?
        }
    } else {
        return Err("no filename or metainfo specified".into());
    };
    let metainfo = Metainfo::from_bytes(&bytes).map_err(|_| CORRUPT.to_string())?;
    Ok(AddSource::Metainfo {
        bytes,
        metainfo: Box::new(metainfo),
    })
}

/// Fetches a `.torrent` over HTTP(S): at most [`MAX_TORRENT_URL_BYTES`]
/// within [`URL_TIMEOUT`], a 2xx status required.
///
/// # Errors
/// Transport errors, a non-2xx status, a body over the limit.
pub fn fetch_url(url: &str) -> Result<Vec<u8>, String> {
    fetch(url, MAX_TORRENT_URL_BYTES, 5)
}

/// Fetches `url` over HTTP(S): at most `limit` bytes within
/// [`URL_TIMEOUT`], following at most `redirects` redirects, a 2xx status
/// required.
///
/// # Errors
/// Transport errors, a non-2xx status (a redirect past `redirects` too),
/// a body over the limit.
pub fn fetch(url: &str, limit: u64, redirects: u32) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(redirects)
        .user_agent(concat!("bittern/", env!("CARGO_PKG_VERSION")))
        .timeout_global(Some(URL_TIMEOUT))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "cannot fetch {url}: http status {}",
            status.as_u16()
        ));
    }
    let too_big = || format!("cannot fetch {url}: more than {limit} bytes");
    if resp.body().content_length().is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if body.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(body)
}
