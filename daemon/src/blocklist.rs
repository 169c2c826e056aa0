//! The blocklist: Transmission's `blocklist-enabled`, `blocklist-url`,
//! `blocklist-size` and `blocklist-update`.
//!
//! `blocklist-update` fetches the configured `blocklist-url` and nothing
//! else: there is no default URL (the setting starts empty and an update
//! without one is refused), the URL must be `http://` or `https://`, and
//! no redirect is followed. The body (at most [`MAX_BYTES`], gzip or not,
//! also after decompression) is read by [`IpFilter::parse`]: P2P plain
//! text, eMule DAT, bare ranges or CIDR, IPv4 and IPv6; lines it does not
//! understand are skipped, at most [`MAX_RANGES`] ranges are kept. A list
//! without a single range is refused and the old one kept. The merged
//! ranges are stored atomically in `blocklist.txt` in the config dir (one
//! `first-last` a line) and read back at start. While `blocklist-enabled`
//! is true the engine refuses those peers (see
//! [`bittern_engine::Session::set_ip_filter`]). `blocklist-size` is the
//! number of merged ranges stored.

use std::io::Read;
use std::path::{Path, PathBuf};

use bittern_engine::IpFilter;
use log::{info, warn};

/// The file in the config dir holding the stored ranges.
pub const FILE: &str = "blocklist.txt";
/// The most bytes fetched, and the most a gzip body may inflate to.
pub const MAX_BYTES: u64 = 64 << 20;
/// The most ranges kept from one list (public lists hold under a million).
pub const MAX_RANGES: usize = 2_000_000;

/// The stored file under `config_dir`.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join(FILE)
}

/// The stored list, empty when there is none (or it cannot be read: the
/// error is logged, the daemon starts without it).
pub fn load(config_dir: &Path) -> IpFilter {
    let p = path(config_dir);
    match std::fs::read(&p) {
        Ok(bytes) => {
            let parsed = IpFilter::parse(&String::from_utf8_lossy(&bytes), MAX_RANGES);
            info!(
                "blocklist: {} ranges from {}",
                parsed.filter.len(),
                p.display()
            );
            parsed.filter
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpFilter::new(),
        Err(e) => {
            warn!("cannot read {}: {e}; no blocklist", p.display());
            IpFilter::new()
        }
    }
}

/// Fetches `url`, reads it and stores the ranges in `config_dir`.
///
/// # Errors
/// The message for the client: no URL, a URL that is not http(s), a
/// fetch that failed, a body that is no blocklist, the store failing.
pub fn update(url: &str, config_dir: &Path) -> Result<IpFilter, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("blocklist-url is not set: set it with session-set first".into());
    }
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(format!("blocklist-url {url:?} is not an http(s) url"));
    }
    let body = crate::source::fetch(url, MAX_BYTES, 0)?;
    let text = decode(&body)?;
    let parsed = IpFilter::parse(&text, MAX_RANGES);
    if parsed.filter.is_empty() {
        return Err(format!(
            "no address ranges in the blocklist at {url} ({} lines not understood)",
            parsed.rejected
        ));
    }
    if parsed.truncated {
        warn!("blocklist at {url}: only the first {MAX_RANGES} ranges kept");
    }
    crate::store::write_atomic(&path(config_dir), parsed.filter.to_text().as_bytes())
        .map_err(|e| format!("cannot store the blocklist: {e}"))?;
    info!(
        "blocklist updated from {url}: {} ranges read, {} after merging, {} lines skipped",
        parsed.ranges,
        parsed.filter.len(),
        parsed.rejected
    );
    Ok(parsed.filter)
}

/// The body as text, inflated first when it is gzip.
fn decode(body: &[u8]) -> Result<String, String> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(body)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the blocklist is not valid gzip: {e}"))?;
        if out.len() as u64 > MAX_BYTES {
            return Err(format!(
                "the blocklist inflates to more than {MAX_BYTES} bytes"
            ));
        }
        return Ok(String::from_utf8_lossy(&out).into_owned());
    }
    if body.starts_with(b"PK\x03\x04") {
        return Err("zip blocklists are not supported (serve it plain or gzip)".into());
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_plain_bodies_read_alike() {
        let text = "a:10.0.0.0-10.0.0.255\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode(&gz).unwrap(), text);
        assert_eq!(decode(text.as_bytes()).unwrap(), text);
        assert!(decode(&gz[..gz.len() / 2]).is_err(), "truncated gzip");
        assert!(decode(b"PK\x03\x04rest").is_err());
    }

    #[test]
    fn updates_need_an_http_url_and_stored_lists_come_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(update("", dir.path()).unwrap_err().contains("not set"));
        assert!(update("file:///etc/passwd", dir.path())
            .unwrap_err()
            .contains("not an http"));
        assert!(load(dir.path()).is_empty(), "nothing stored yet");
        let f = IpFilter::parse("x:1.2.3.4-1.2.3.9\n::1\n", 10).filter;
        crate::store::write_atomic(&path(dir.path()), f.to_text().as_bytes()).unwrap();
        assert_eq!(load(dir.path()), f);
    }
}
