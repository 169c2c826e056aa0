//! One HTTP range request, checked: status, `Content-Range`,
//! `Content-Length`, and a body read to exactly the length asked for.

use std::io::Read;
use std::time::Duration;

use super::redirect::{self, Refused};
use super::{WebSeedConfig, WebSeedError};

/// Bytes handed to the sink at a time (at most).
const CHUNK: usize = 256 << 10;

/// How a request ended without error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fetched {
    /// Every byte asked for went to the sink; `Some` holds the final URL
    /// after a redirect.
    Done(Option<String>),
    /// The sink asked to stop.
    Stopped,
}

/// A keep-alive HTTP client for one seed.
pub(super) struct Fetcher {
    agent: ureq::Agent,
    max_redirects: u32,
    retry_default: Duration,
    retry_max: Duration,
    buf: Vec<u8>,
}

impl Fetcher {
    pub(super) fn new(config: &WebSeedConfig) -> Fetcher {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // redirects are followed here, each checked (`redirect`)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .save_redirect_history(false)
            .user_agent(config.user_agent.as_str())
            // Ask for identity: a compressed body would not be the range.
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .max_idle_connections_per_host(1)
            .build()
            .into();
        Fetcher {
            agent,
            max_redirects: config.max_redirects,
            retry_default: config.retry_base,
            retry_max: config.retry_max,
            buf: vec![0; CHUNK],
        }
    }

    /// Fetches bytes `start..start + len` of `url` (`len > 0`), handing them
    /// in order to `sink`, which returns `false` to stop early. Never reads
    /// more than `len + 1` body bytes (the extra one detects an overlong
    /// body).
    pub(super) fn get_range(
        &mut self,
        url: &str,
        start: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<bool, WebSeedError>,
    ) -> Result<Fetched, WebSeedError> {
        let end = start + len - 1;
        let mut current = url.to_string();
        let mut hops = 0;
        let resp = loop {
            let resp = self
                .agent
                .get(&current)
                .header("Range", format!("bytes={start}-{end}"))
                .call()
                .map_err(|e| WebSeedError::Http(Box::new(e)))?;
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                break resp;
            }
            hops += 1;
            if hops > self.max_redirects {
                return Err(WebSeedError::TooManyRedirects {
                    max: self.max_redirects,
                });
            }
            let location = resp
                .headers()
                .get("location")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let next = redirect::resolve(&current, &location).ok_or_else(|| {
                WebSeedError::RedirectScheme {
                    to: location.clone(),
                }
            })?;
            match redirect::check(url, &next) {
                Ok(()) => current = next,
                Err(Refused::Scheme(to)) => return Err(WebSeedError::RedirectScheme { to }),
                Err(Refused::ToLocal { to }) => return Err(WebSeedError::RedirectToLocal { to }),
            }
        };
        let status = resp.status().as_u16();
        match status {
            206 => {}
            200 => return Err(WebSeedError::NoRangeSupport),
            503 => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(self.retry_default, Duration::from_secs)
                    .min(self.retry_max);
                return Err(WebSeedError::Unavailable { retry_after });
            }
            _ => return Err(WebSeedError::Status { status }),
        }
        let range = resp
            .headers()
            .get("content-range")
            .ok_or(WebSeedError::MissingContentRange)?;
        let got = String::from_utf8_lossy(range.as_bytes()).into_owned();
        if parse_content_range(&got) != Some((start, end)) {
            return Err(WebSeedError::WrongContentRange { got, start, end });
        }
        let redirected = (current != url).then_some(current);
        let mut body = resp.into_body();
        match body.content_length() {
            Some(n) if n > len => return Err(WebSeedError::BodyTooLong { expected: len }),
            Some(n) if n < len => {
                return Err(WebSeedError::ShortBody {
                    expected: len,
                    got: n,
                })
            }
            _ => {}
        }
        let mut reader = body.as_reader().take(len + 1);
        let mut got = 0u64;
        while got < len {
            let want = usize::try_from(len - got).map_or(CHUNK, |r| r.min(CHUNK));
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut self.buf[filled..want]) {
                    Ok(0) => {
                        return Err(WebSeedError::ShortBody {
                            expected: len,
                            got: got + filled as u64,
                        })
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(WebSeedError::Io(e)),
                }
            }
            got += filled as u64;
            if !sink(&self.buf[..filled])? {
                return Ok(Fetched::Stopped);
            }
        }
        // The bytes asked for are in; anything more is a broken server.
        let mut one = [0u8; 1];
        loop {
            match reader.read(&mut one) {
                Ok(0) => break,
                Ok(_) => return Err(WebSeedError::BodyTooLong { expected: len }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WebSeedError::Io(e)),
            }
        }
        Ok(Fetched::Done(redirected))
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) into (FIRST, LAST).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let total = total.trim();
    if total != "*" {
        let t: u64 = total.parse().ok()?;
        if b >= t {
            return None;
        }
    }
    (a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5)));
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range("bytes 9-3/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
