//! `--only PATTERN`: glob-ish matching of a file's path inside a torrent.
//!
//! `*` matches any run of characters (including `/`), `?` matches exactly
//! one character, everything else matches itself. The path is the file's
//! components under the torrent root joined by `/` (for a single-file
//! torrent, its name). A pattern matches if it matches the whole path or,
//! when it has no `/`, the file's last component, so `*.iso` selects every
//! ISO at any depth.

/// Whether `pattern` matches all of `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point (the last `*`).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a file at `path` (components inside the torrent) is selected
/// by any of `patterns`.
pub fn selected(patterns: &[String], path: &[String]) -> bool {
    let full = path.join("/");
    let last = path.last().map_or("", String::as_str);
    patterns
        .iter()
        .any(|p| matches(p, &full) || (!p.contains('/') && matches(p, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Vec<String> {
        s.split('/').map(str::to_string).collect()
    }

    #[test]
    fn wildcards() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything/at/all"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*.txt", "notes.txt"));
        assert!(!matches("*.txt", "notes.txt.bak"));
        assert!(matches("docs/*", "docs/a/b.md"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("**x", "x"));
        assert!(matches("héllo?", "héllo!"));
        assert!(!matches("abc", "abcd"));
    }

    #[test]
    fn selection() {
        let pats = vec!["*.iso".to_string(), "docs/readme.?d".to_string()];
        assert!(selected(&pats, &comps("images/big.iso")));
        assert!(selected(&pats, &comps("docs/readme.md")));
        assert!(!selected(&pats, &comps("other/readme.md")));
        assert!(!selected(&pats, &comps("images/big.img")));
        // single-file torrents are matched on their name
        assert!(selected(&["big*".to_string()], &comps("big.iso")));
        assert!(!selected(&[], &comps("x")));
    }
}
