//! Which redirects a web seed may follow.
//!
//! The rule (libtorrent's SSRF rule, made explicit):
//! - a redirect goes to `http` or `https` only (never `file:`, `ftp:`,
//!   `gopher:`, ...);
//! - a seed whose URL names a *public* host (an IP literal that is none of
//!   the below, or a name that resolves only to such addresses) may not be
//!   redirected to a *local* one: loopback, private (RFC 1918, IPv6 unique
//!   local), link-local, unspecified, CGNAT shared (100.64/10), or the name
//!   `localhost`. A torrent from the internet must not make the client
//!   send requests into the user's own network;
//! - a seed that is local to begin with (a LAN mirror, a test server) may
//!   redirect anywhere over http(s).
//!
//! A redirect breaking the rule drops the seed at once. Names are resolved
//! only when the origin is public and the target is a name, on the seed's
//! own thread; a name that does not resolve counts as not local (the
//! request then fails on its own).

use std::net::{IpAddr, ToSocketAddrs};

use ureq::http::Uri;

/// Why a redirect is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// The target is not an http(s) URL (or not a URL).
    Scheme(String),
    /// A public seed redirected to a local address.
    ToLocal {
        /// The target URL.
        to: String,
    },
}

/// Whether `ip` is local: loopback, private, link-local, unspecified or
/// shared (CGNAT) space.
pub(super) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// The addresses `uri`'s host stands for: the literal, or the name
/// resolved (`localhost` counts as loopback without asking).
fn addresses(uri: &Uri) -> Vec<IpAddr> {
    let Some(host) = uri.host() else {
        return Vec::new();
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![ip];
    }
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return vec![IpAddr::from([127, 0, 0, 1])];
    }
    let port = uri.port_u16().unwrap_or(80);
    (bare, port)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default()
}

/// `location` (absolute, scheme-relative, absolute-path or relative)
/// resolved against `base`.
pub(super) fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    // an absolute URI: a scheme (RFC 3986: a letter, then letters, digits,
    // `+`, `-`, `.`) before the first `:`, with no `/` before it
    if let Some((scheme, _)) = location.split_once(':') {
        let mut c = scheme.chars();
        if c.next().is_some_and(|f| f.is_ascii_alphabetic())
            && c.all(|x| x.is_ascii_alphanumeric() || "+-.".contains(x))
        {
            return Some(location.to_string());
        }
    }
    let b: Uri = base.parse().ok()?;
    let scheme = b.scheme_str()?;
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    let authority = b.authority()?.as_str();
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = b.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{scheme}://{authority}{dir}{location}"))
}

/// Checks a redirect from the seed's `origin` URL to `to`.
pub(super) fn check(origin: &str, to: &str) -> Result<(), Refused> {
    let target: Uri = to.parse().map_err(|_| Refused::Scheme(to.to_string()))?;
    match target.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err(Refused::Scheme(to.to_string())),
    }
    if target.host().is_none() {
        return Err(Refused::Scheme(to.to_string()));
    }
    let Ok(origin) = origin.parse::<Uri>() else {
        return Ok(());
    };
    let from = addresses(&origin);
    let public = !from.is_empty() && from.iter().all(|ip| !is_local(*ip));
    if public && addresses(&target).into_iter().any(is_local) {
        return Err(Refused::ToLocal { to: to.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pure checks on IP literals: nothing here resolves or connects.
    #[test]
    fn public_seeds_may_not_redirect_into_local_networks() {
        let public = "http://93.184.216.34/f.bin";
        for to in [
            "http://127.0.0.1/x",
            "http://127.9.9.9:8080/x",
            "http://10.1.2.3/x",
            "http://172.16.0.1/x",
            "http://192.168.1.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/x",
            "http://0.0.0.0/x",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://[fe80::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://localhost:8080/x",
        ] {
            assert_eq!(
                check(public, to),
                Err(Refused::ToLocal { to: to.into() }),
                "{to}"
            );
        }
        assert_eq!(check(public, "https://198.51.100.7/mirror/f.bin"), Ok(()));
        assert_eq!(check("http://[2001:db8::1]/f", "http://8.8.4.4/f"), Ok(()));
        // a local seed may go anywhere over http(s)
        assert_eq!(
            check("http://127.0.0.1:8000/f", "http://127.0.0.2/f"),
            Ok(())
        );
        assert_eq!(
            check("http://192.168.0.5/f", "http://93.184.216.34/f"),
            Ok(())
        );
    }

    #[test]
    fn only_http_and_https_are_followed() {
        for to in [
            "file:///etc/passwd",
            "ftp://127.0.0.1/f",
            "gopher://127.0.0.1:70/",
            "javascript:alert(1)",
            "http:///nohost",
        ] {
            assert!(
                matches!(check("http://127.0.0.1/f", to), Err(Refused::Scheme(_))),
                "{to}"
            );
        }
        assert_eq!(check("http://127.0.0.1/f", "HTTPS://127.0.0.1/g"), Ok(()));
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = "http://127.0.0.1:81/a/b/f.bin";
        assert_eq!(
            resolve(base, "/x").as_deref(),
            Some("http://127.0.0.1:81/x")
        );
        assert_eq!(
            resolve(base, "g.bin").as_deref(),
            Some("http://127.0.0.1:81/a/b/g.bin")
        );
        assert_eq!(resolve(base, "//h:1/y").as_deref(), Some("http://h:1/y"));
        assert_eq!(resolve(base, "ftp://z/").as_deref(), Some("ftp://z/"));
        assert_eq!(resolve(base, "mailto:x@y").as_deref(), Some("mailto:x@y"));
        assert_eq!(
            resolve(base, "./a:b").as_deref(),
            Some("http://127.0.0.1:81/a/b/./a:b")
        );
    }
}
