//! Shared helpers: tool detection, running real tools, checking pieces.

use std::path::{Path, PathBuf};
use std::process::Command;

use bittern_wire::Metainfo;
use sha1::{Digest, Sha1};

/// The Debian python that has `libtorrent` (not a pyenv python on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Whether an interop tool is usable. Missing: skip loudly, or fail when
/// `BITTERN_REQUIRE_INTEROP=1` ([`bittern_testkit::require`]).
pub fn have_tool(name: &str) -> bool {
    let ok = if name == "libtorrent" {
        Command::new(PYTHON)
            .args(["-c", "import libtorrent"])
            .output()
            .is_ok_and(|o| o.status.success())
    } else {
        bittern_testkit::on_path(name)
    };
    bittern_testkit::require(&format!("interop tool {name}"), ok)
}

/// Run a command; panic with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The v1 info hash `transmission-show` reports.
pub fn transmission_hash(torrent: &Path) -> String {
    let out = run(Command::new("transmission-show").arg(torrent));
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Hash"))
        .filter_map(|l| l.rsplit(' ').next())
        .find(|h| h.len() == 40)
        .unwrap_or_else(|| panic!("no hash in transmission-show output:\n{out}"))
        .to_owned()
}

/// What libtorrent says about a torrent: v1 hash, then one line per file:
/// `<pad 0|1> <length> <path>`.
pub fn libtorrent_info(torrent: &Path) -> (String, Vec<(bool, u64, String)>) {
    let script = r#"
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
print(ti.info_hashes().v1)
fs = ti.files()
for i in range(ti.num_files()):
    pad = 1 if fs.file_flags(i) & lt.file_storage.flag_pad_file else 0
    print(pad, fs.file_size(i), fs.file_path(i))
"#;
    let out = run(Command::new(PYTHON).args(["-c", script]).arg(torrent));
    let mut lines = out.lines();
    let hash = lines.next().unwrap_or_default().to_owned();
    let files = lines
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let pad = it.next() == Some("1");
            let len = it.next().unwrap().parse().unwrap();
            (pad, len, it.next().unwrap().to_owned())
        })
        .collect();
    (hash, files)
}

/// Read the torrent's content from `save_dir` (padding files are zeros)
/// and check every piece hash.
pub fn verify_pieces(m: &Metainfo, save_dir: &Path) {
    let mut data = Vec::new();
    for f in &m.info.files {
        if f.padding {
            data.resize(data.len() + f.length as usize, 0);
        } else {
            let p = save_dir.join(m.info.disk_path(f));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(bytes.len() as u64, f.length, "{}", p.display());
            data.extend(bytes);
        }
    }
    assert_eq!(data.len() as u64, m.info.total_length());
    let chunks: Vec<_> = data.chunks(m.info.piece_length as usize).collect();
    assert_eq!(chunks.len(), m.info.piece_count());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.len() as u64, m.info.piece_len(i));
        assert_eq!(
            <[u8; 20]>::from(Sha1::digest(c)),
            m.info.pieces[i],
            "piece {i}"
        );
    }
}

/// SHA-1 of each `piece_length` chunk of `data`.
pub fn piece_hashes(data: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    data.chunks(piece_length)
        .map(|c| Sha1::digest(c).into())
        .collect()
}
