//! One-shot announce and scrape, dispatched on the URL scheme.

use bittern_wire::InfoHash;

use crate::error::{Error, Result};
use crate::types::{AnnounceParams, AnnounceResponse, ClientConfig, ScrapeStats};
use crate::{http, udp};

enum Scheme {
    Http,
    Udp,
}

fn scheme(url: &str) -> Result<Scheme> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(Scheme::Http)
    } else if lower.starts_with("udp://") {
        Ok(Scheme::Udp)
    } else {
        Err(Error::UnsupportedScheme {
            url: url.to_string(),
        })
    }
}

/// Announces to one tracker (`http://`, `https://` or `udp://`) and waits
/// for its answer, bounded by `config`'s timeouts.
///
/// # Errors
/// A typed [`Error`] for every way a tracker can fail; never panics on a
/// hostile reply.
pub fn announce(
    url: &str,
    params: &AnnounceParams,
    config: &ClientConfig,
) -> Result<AnnounceResponse> {
    match scheme(url)? {
        Scheme::Http => http::announce(url, params, config),
        Scheme::Udp => udp::client::announce(url, params, config),
    }
}

/// Scrapes one tracker for `info_hashes` (BEP 48 over HTTP, BEP 15 over
/// UDP). The result lists the torrents the tracker reported, in the order
/// asked for.
///
/// # Errors
/// As [`announce`]; an HTTP URL whose last path component does not start
/// with `announce` gives [`Error::BadUrl`].
pub fn scrape(
    url: &str,
    info_hashes: &[InfoHash],
    config: &ClientConfig,
) -> Result<Vec<(InfoHash, ScrapeStats)>> {
    match scheme(url)? {
        Scheme::Http => http::scrape(url, info_hashes, config),
        Scheme::Udp => udp::client::scrape(url, info_hashes, config),
    }
}
