//! Making names from a `.torrent` safe to use as path components.
//!
//! Rules (applied to the torrent `name` and to every `path` component):
//! - rejected, as a typed error: empty, `.`, `..`, and anything that would
//!   be absolute (a leading `/` or `\`, or a Windows drive such as `C:`);
//! - replaced by `_`: `/` and `\` inside a component, NUL and other
//!   control characters;
//! - invalid UTF-8 is converted lossily (callers prefer the `*.utf-8` keys
//!   when present); other non-ASCII text is kept;
//! - components longer than 255 bytes (the usual file-name limit) are cut
//!   at a character boundary, keeping a short extension.

/// Longest component we produce, in bytes.
const MAX_COMPONENT: usize = 255;

/// Why a component is unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsafe {
    Empty,
    Dot,
    DotDot,
    Absolute,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsafe::Empty => "empty component",
            Unsafe::Dot => "`.` component",
            Unsafe::DotDot => "`..` component",
            Unsafe::Absolute => "absolute path",
        })
    }
}

/// Bytes to text: valid UTF-8 as is, otherwise lossy.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Check and clean one component.
pub(crate) fn sanitize_component(raw: &str) -> Result<String, Unsafe> {
    match raw {
        "" => return Err(Unsafe::Empty),
        "." => return Err(Unsafe::Dot),
        ".." => return Err(Unsafe::DotDot),
        _ => {}
    }
    let b = raw.as_bytes();
    if b[0] == b'/' || b[0] == b'\\' || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
    {
        return Err(Unsafe::Absolute);
    }
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.len() > MAX_COMPONENT {
        s = shorten(&s);
    }
    Ok(s)
}

/// Cut to at most [`MAX_COMPONENT`] bytes, keeping an extension of up to
/// 16 bytes.
fn shorten(s: &str) -> String {
    let ext = match s.rfind('.') {
        Some(i) if s.len() - i <= 16 && i > 0 => &s[i..],
        _ => "",
    };
    let mut cut = MAX_COMPONENT - ext.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &s[..cut], ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(sanitize_component(""), Err(Unsafe::Empty));
        assert_eq!(sanitize_component("."), Err(Unsafe::Dot));
        assert_eq!(sanitize_component(".."), Err(Unsafe::DotDot));
        assert_eq!(sanitize_component("/etc"), Err(Unsafe::Absolute));
        assert_eq!(sanitize_component("\\x"), Err(Unsafe::Absolute));
        assert_eq!(sanitize_component("C:x"), Err(Unsafe::Absolute));
        assert_eq!(sanitize_component("AC/DC").unwrap(), "AC_DC");
        assert_eq!(sanitize_component("a\\..\\b").unwrap(), "a_.._b");
        assert_eq!(sanitize_component("nul\0x\n").unwrap(), "nul_x_");
        assert_eq!(sanitize_component("...").unwrap(), "...");
        assert_eq!(sanitize_component("Ünïcødé 日本").unwrap(), "Ünïcødé 日本");
        let long = format!("{}.mkv", "é".repeat(200));
        let s = sanitize_component(&long).unwrap();
        assert!(s.len() <= 255 && s.ends_with(".mkv"), "{s}");
    }
}
