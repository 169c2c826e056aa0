//! `bittern info`: describe a torrent file or a magnet link, as text or JSON.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::anyhow;
use bittern_wire::{Magnet, MetaVersion, Metainfo};
use serde_json::{json, Value};

use crate::args::InfoArgs;
use crate::exit::{coded, Code};
use crate::load;
use crate::units::format_size;

/// The `--json` object of a torrent file. Stable keys: `name`,
/// `info_hash` (40 lowercase hex digits: the id used with peers and
/// trackers, the truncated v2 hash for a v2-only torrent), `info_hash_v2`
/// (64 lowercase hex digits, `null` for v1 torrents), `meta_version` (1, or
/// 2 for v2 and hybrid torrents), `total_size`, `piece_length`,
/// `piece_count`, `private`, `trackers` (tiers of URLs), `web_seeds`,
/// `files` (`{path, length, padding}` plus `pieces_root` (64 hex digits or
/// `null`) for v2 and hybrid torrents, `path` being the components under
/// the torrent root joined by `/`), plus `multi_file`, `comment`,
/// `created_by`, `creation_date`, `source`.
pub fn torrent_json(m: &Metainfo) -> Value {
    let files: Vec<Value> = m
        .info
        .files
        .iter()
        .map(|f| {
            let mut o =
                json!({ "path": f.path.join("/"), "length": f.length, "padding": f.padding });
            if m.info.version.has_v2() {
                o["pieces_root"] = json!(f.pieces_root.map(hex));
            }
            o
        })
        .collect();
    json!({
        "name": m.info.name,
        "info_hash": m.info_hash.to_hex(),
        "info_hash_v2": m.info_hash_v2.map(|h| h.to_hex()),
        "meta_version": m.info.version.number(),
        "total_size": m.info.total_length(),
        "piece_length": m.info.piece_length,
        "piece_count": m.info.piece_count(),
        "private": m.info.private,
        "multi_file": m.info.multi_file,
        "trackers": m.trackers(),
        "web_seeds": m.url_list,
        "files": files,
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "source": m.info.source,
    })
}

/// The `--json` object of a magnet link (sizes and files are unknown).
pub fn magnet_json(m: &Magnet) -> Value {
    let tiers: Vec<Vec<String>> = m.trackers.iter().map(|t| vec![t.clone()]).collect();
    json!({
        "magnet": true,
        "name": m.display_name,
        "info_hash": m.info_hash.map(|h| h.to_hex()),
        "info_hash_v2": m.info_hash_v2.map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        "total_size": null,
        "piece_length": null,
        "piece_count": null,
        "private": null,
        "trackers": tiers,
        "web_seeds": [],
        "files": null,
        "peers": m.peers,
    })
}

/// Lowercase hex of a hash.
fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The file tree of `m`, one line per directory and file, with sizes.
pub fn file_tree(m: &Metainfo) -> Vec<String> {
    let mut out = Vec::new();
    if !m.info.multi_file {
        if let Some(f) = m.info.files.first() {
            out.push(format!("{}  ({})", m.info.name, format_size(f.length)));
        }
        return out;
    }
    out.push(format!("{}/", m.info.name));
    let mut open: Vec<&str> = Vec::new();
    let mut padding = (0usize, 0u64);
    for f in &m.info.files {
        if f.padding {
            padding.0 += 1;
            padding.1 += f.length;
            continue;
        }
        let (dirs, file) = f.path.split_at(f.path.len().saturating_sub(1));
        let common = open
            .iter()
            .zip(dirs)
            .take_while(|(a, b)| **a == b.as_str())
            .count();
        open.truncate(common);
        for d in &dirs[common..] {
            out.push(format!("{}{d}/", "  ".repeat(open.len() + 1)));
            open.push(d);
        }
        let name = file.first().map_or("", String::as_str);
        out.push(format!(
            "{}{name}  ({})",
            "  ".repeat(open.len() + 1),
            format_size(f.length)
        ));
    }
    if padding.0 > 0 {
        out.push(format!(
            "  ({} padding files, {})",
            padding.0,
            format_size(padding.1)
        ));
    }
    out
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_unix_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn print_torrent(out: &mut String, m: &Metainfo) -> std::fmt::Result {
    let total = m.info.total_length();
    writeln!(out, "name:          {}", m.info.name)?;
    match (m.info.version, m.info_hash_v2) {
        (MetaVersion::V1, _) | (_, None) => {
            writeln!(out, "info hash:     {}", m.info_hash.to_hex())?;
        }
        (MetaVersion::V2, Some(v2)) => {
            writeln!(out, "info hash v2:  {v2}")?;
            writeln!(out, "  (truncated:  {})", m.info_hash.to_hex())?;
        }
        (MetaVersion::Hybrid, Some(v2)) => {
            writeln!(out, "info hash v1:  {}", m.info_hash.to_hex())?;
            writeln!(out, "info hash v2:  {v2}")?;
        }
    }
    writeln!(
        out,
        "format:        {}",
        match m.info.version {
            MetaVersion::V1 => "v1",
            MetaVersion::V2 => "v2 (BEP 52)",
            MetaVersion::Hybrid => "hybrid v1 + v2 (BEP 52)",
        }
    )?;
    writeln!(out, "total size:    {} ({total} bytes)", format_size(total))?;
    writeln!(
        out,
        "pieces:        {} x {} ({} bytes)",
        m.info.piece_count(),
        format_size(m.info.piece_length),
        m.info.piece_length
    )?;
    writeln!(out, "private:       {}", yes_no(m.info.private))?;
    let tiers = m.trackers();
    if tiers.is_empty() {
        writeln!(out, "trackers:      none")?;
    } else {
        writeln!(out, "trackers:")?;
        for (i, tier) in tiers.iter().enumerate() {
            writeln!(out, "  tier {}: {}", i + 1, tier.join(" "))?;
        }
    }
    if m.url_list.is_empty() {
        writeln!(out, "web seeds:     none")?;
    } else {
        writeln!(out, "web seeds:")?;
        for u in &m.url_list {
            writeln!(out, "  {u}")?;
        }
    }
    if let Some(c) = &m.comment {
        writeln!(out, "comment:       {c}")?;
    }
    if let Some(c) = &m.created_by {
        writeln!(out, "created by:    {c}")?;
    }
    if let Some(d) = m.creation_date {
        writeln!(out, "creation date: {}", format_unix_time(d))?;
    }
    if let Some(s) = &m.info.source {
        writeln!(out, "source:        {s}")?;
    }
    let real = m.info.files.iter().filter(|f| !f.padding).count();
    writeln!(out, "files ({real}):")?;
    for line in file_tree(m) {
        writeln!(out, "  {line}")?;
    }
    if m.info.version.has_v2() {
        // each file's merkle root (BEP 52 `pieces root`); empty files have none
        writeln!(out, "pieces roots:")?;
        for f in m.info.files.iter().filter(|f| !f.padding) {
            if let Some(root) = f.pieces_root {
                writeln!(out, "  {}  {}", hex(root), f.path.join("/"))?;
            }
        }
    }
    Ok(())
}

fn print_magnet(out: &mut String, m: &Magnet) -> std::fmt::Result {
    writeln!(out, "magnet link")?;
    writeln!(
        out,
        "name:          {}",
        m.display_name.as_deref().unwrap_or("(not given)")
    )?;
    match m.info_hash {
        Some(h) => writeln!(out, "info hash:     {}", h.to_hex())?,
        None => writeln!(out, "info hash:     (v2 only)")?,
    }
    if let Some(v2) = m.info_hash_v2 {
        writeln!(out, "info hash v2:  {}", hex(v2))?;
    }
    if m.trackers.is_empty() {
        writeln!(out, "trackers:      none")?;
    } else {
        writeln!(out, "trackers:")?;
        for (i, t) in m.trackers.iter().enumerate() {
            writeln!(out, "  tier {}: {t}", i + 1)?;
        }
    }
    for p in &m.peers {
        writeln!(out, "peer:          {p}")?;
    }
    writeln!(
        out,
        "(size and files are known only once the metadata is fetched)"
    )?;
    Ok(())
}

/// Runs `bittern info`.
///
/// # Errors
/// [`Code::Usage`] for an unreadable or invalid torrent, or a bad magnet link.
pub fn run(args: &InfoArgs) -> anyhow::Result<Code> {
    let mut out = String::new();
    if args.torrent.starts_with("magnet:") {
        let m = Magnet::parse(&args.torrent)
            .map_err(|e| coded(Code::Usage, anyhow!("invalid magnet link: {e}")))?;
        if args.json {
            out = format!("{}\n", magnet_json(&m));
        } else {
            print_magnet(&mut out, &m)?;
        }
    } else {
        let m = load::read_torrent(Path::new(&args.torrent))?;
        if args.json {
            out = format!("{}\n", torrent_json(&m));
        } else {
            print_torrent(&mut out, &m)?;
        }
    }
    write_stdout(&out)?;
    Ok(Code::Ok)
}

/// Writes `text` to standard output. A reader that went away (`bittern
/// info ... | head`) is not an error: like other Unix tools, the command
/// just stops.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_wire::MetainfoBuilder;

    fn multi() -> Metainfo {
        MetainfoBuilder::new("album")
            .file(vec!["cd1".into(), "01.flac".into()], 10)
            .file(vec!["cd1".into(), "02.flac".into()], 20)
            .pad_file(2)
            .file(vec!["cover.jpg".into()], 3)
            .file(vec!["cd2".into(), "extra".into(), "x".into()], 1)
            .piece_length(16384)
            .pieces(vec![[1; 20]])
            .announce("http://127.0.0.1:1/announce")
            .url_list(vec!["http://127.0.0.1:2/".into()])
            .build_metainfo()
            .unwrap()
    }

    #[test]
    fn json_has_the_stable_keys() {
        let m = multi();
        let v = torrent_json(&m);
        assert_eq!(v["name"], "album");
        assert_eq!(v["info_hash"], m.info_hash.to_hex());
        assert_eq!(v["info_hash"].as_str().unwrap().len(), 40);
        assert_eq!(v["total_size"], 36);
        assert_eq!(v["piece_length"], 16384);
        assert_eq!(v["piece_count"], 1);
        assert_eq!(v["private"], false);
        assert_eq!(v["trackers"], json!([["http://127.0.0.1:1/announce"]]));
        assert_eq!(v["web_seeds"], json!(["http://127.0.0.1:2/"]));
        assert_eq!(
            v["files"][0],
            json!({"path": "cd1/01.flac", "length": 10, "padding": false})
        );
        assert_eq!(v["files"][2]["padding"], true);
    }

    #[test]
    fn tree() {
        let lines = file_tree(&multi());
        assert_eq!(
            lines,
            [
                "album/",
                "  cd1/",
                "    01.flac  (10 B)",
                "    02.flac  (20 B)",
                "  cover.jpg  (3 B)",
                "  cd2/",
                "    extra/",
                "      x  (1 B)",
                "  (1 padding files, 2 B)",
            ]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(format_unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_time(1_795_757_989), "2026-11-27 05:39:49 UTC");
        assert_eq!(format_unix_time(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn magnet() {
        let m = Magnet::parse(
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x&tr=http%3A%2F%2F127.0.0.1%3A1%2Fa",
        )
        .unwrap();
        let v = magnet_json(&m);
        assert_eq!(v["info_hash"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(v["name"], "x");
        assert_eq!(v["trackers"], json!([["http://127.0.0.1:1/a"]]));
    }
}
