//! The web page: a few static files embedded in the binary (no build step,
//! no outside resource), served at `/` and under `/transmission/web/`.
//! The page talks to the daemon only through the RPC.

use crate::http::Response;

/// The page's files: (name under `/transmission/web/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=UTF-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=UTF-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=UTF-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../web/icon.svg"),
    ),
];

/// The response for `path` if it names a file of the page (`/`,
/// `/transmission/web`, `/transmission/web/` and `.../index.html` give the
/// page itself), with headers that keep it from loading anything from
/// elsewhere or being framed.
pub fn serve(path: &str) -> Option<Response> {
    let name = match path {
        "/" | "/transmission/web" | "/transmission/web/" => "index.html",
        p => p.strip_prefix("/transmission/web/")?,
    };
    let (_, kind, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    Some(
        Response::new(200, kind, *body)
            .with_header("Cache-Control", "no-cache")
            .with_header(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            )
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("X-Frame-Options", "DENY"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_files_only() {
        for p in ["/", "/transmission/web", "/transmission/web/"] {
            let r = serve(p).unwrap();
            assert!(String::from_utf8_lossy(&r.body).contains("<script type=\"module\""));
        }
        let js = serve("/transmission/web/app.js").unwrap();
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=UTF-8")
        );
        assert!(serve("/transmission/web/../Cargo.toml").is_none());
        assert!(serve("/app.js").is_none());
        // Nothing the page loads points outside the daemon.
        for (name, _, body) in FILES {
            let text = String::from_utf8_lossy(body);
            assert!(
                !text.contains("http://") && !text.contains("https://") || *name == "icon.svg",
                "{name} names an outside resource"
            );
        }
    }
}
