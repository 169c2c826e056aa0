//! Human units on the command line: sizes (`512KiB`, `16MiB`, `1GB`), rates
//! (`10MB/s`) and durations (`30m`, `2h`, `90s`), and their display.
//!
//! Prefixes: `K`, `M`, `G`, `T` alone or with `iB` are binary (1024-based,
//! as `dd` and most BitTorrent clients read `64M`); with a plain `B`
//! (`KB`, `MB`, `GB`) they are decimal (1000-based). Letters are
//! case-insensitive; a bare number is bytes (or bytes per second, or
//! seconds). Fractions are allowed: `1.5GiB`.

use std::time::Duration;

/// Why a size, rate or duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(String);

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

fn err(input: &str, what: &str, examples: &str) -> UnitError {
    UnitError(format!("invalid {what} {input:?} (examples: {examples})"))
}

/// Splits `"1.5GiB"` into (`1.5`, `"GiB"`).
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    Some((value, unit.trim()))
}

fn size_multiplier(unit: &str) -> Option<u64> {
    let u = unit.to_ascii_lowercase();
    Some(match u.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    })
}

const SIZE_EXAMPLES: &str = "512KiB, 16MiB, 1GB, 65536";

/// Parses a size in bytes: `512KiB`, `16MiB`, `1GB`, `1.5G`, `65536`.
///
/// # Errors
/// Anything else, a fraction of a byte, or a size past `u64`.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let bad = || err(s, "size", SIZE_EXAMPLES);
    let (value, unit) = split_number(s).ok_or_else(bad)?;
    let mult = size_multiplier(unit).ok_or_else(bad)?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a positive rate in bytes per second: `10MB/s`, `512KiB/s`,
/// `1M` (the `/s` is optional).
///
/// # Errors
/// Not a size, or zero.
pub fn parse_rate(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("ps"))
        .unwrap_or(t);
    match parse_size(t) {
        Ok(0) => Err(UnitError(format!("rate {s:?} must be above zero"))),
        Ok(n) => Ok(n),
        Err(_) => Err(err(s, "rate", "10MB/s, 512KiB/s, 1M")),
    }
}

/// Parses a duration: `90s`, `30m`, `2h`, `1d`, `1h30m`, `500ms`, or a
/// bare number of seconds.
///
/// # Errors
/// Anything else.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let bad = || err(s, "duration", "90s, 30m, 2h, 1h30m");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let (value, after) = split_number(rest).ok_or_else(bad)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let secs = match unit.trim().to_ascii_lowercase().as_str() {
            "" if next.is_empty() && total == 0.0 => 1.0,
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * secs;
        rest = next;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// `1536` -> `1.5 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Bytes per second -> `12.3 MiB/s`.
pub fn format_rate(bytes_per_sec: f64) -> String {
    let b = if bytes_per_sec.is_finite() && bytes_per_sec > 0.0 {
        bytes_per_sec.round() as u64
    } else {
        0
    };
    format!("{}/s", format_size(b))
}

/// A duration as `1h02m`, `3m05s` or `42s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16mib"), Ok(16 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10kb"), Ok(10_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size(" 2 MiB "), Ok(2 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes() {
        for s in [
            "",
            "MiB",
            "-1",
            "1.5",
            "0.5B",
            "12XB",
            "1..2M",
            ".5M",
            "5.M",
            "1e3",
            "99999999999TB",
        ] {
            assert!(parse_size(s).is_err(), "{s:?} should not parse");
        }
        let e = parse_size("12 parsecs").unwrap_err().to_string();
        assert!(e.contains("invalid size \"12 parsecs\""), "{e}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10MB/s"), Ok(10_000_000));
        assert_eq!(parse_rate("512KiB/s"), Ok(512 * 1024));
        assert_eq!(parse_rate("1M"), Ok(1 << 20));
        assert_eq!(parse_rate("100kbps"), Ok(100_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("0MB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10MB/h").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m 5s"), Ok(Duration::from_secs(5405)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for s in ["", "h", "10x", "1h30", "-5s", "5 years"] {
            assert!(parse_duration(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn display() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(format_rate(0.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "0 B/s");
        assert_eq!(format_rate(3.0 * 1048576.0), "3.0 MiB/s");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }
}
