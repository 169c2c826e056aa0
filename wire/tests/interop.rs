//! Live interop: torrents made now by mktorrent, transmission-create and
//! libtorrent over single- and multi-file trees with non-ASCII names;
//! bittern's info hash must equal the one the tools report. And the
//! reverse: torrents built by `MetainfoBuilder` are accepted by libtorrent
//! and transmission-show with the same hash.

use std::path::{Path, PathBuf};
use std::process::Command;

use bittern_wire::{Metainfo, MetainfoBuilder};

use crate::util::{
    have_tool, libtorrent_info, piece_hashes, run, transmission_hash, verify_pieces, PYTHON,
};

const TRACKER: &str = "http://127.0.0.1:6969/announce";
const MULTI: &str = "Ünïcødé — 日本語";
const SINGLE: &str = "ßingle файл.bin";

/// Deterministic pseudo-random bytes.
fn bytes(seed: u32, len: usize) -> Vec<u8> {
    bittern_testkit::xorshift_bytes(seed, len)
}

/// `root/MULTI/{...}` (four files, one empty) and `root/SINGLE`.
fn make_tree(root: &Path) -> Vec<(Vec<String>, Vec<u8>)> {
    let files: Vec<(Vec<String>, Vec<u8>)> = vec![
        (vec!["a.txt".into()], b"hello world\n".to_vec()),
        (vec!["sub".into(), "données.bin".into()], bytes(1, 70_001)),
        (
            vec!["sub".into(), "深い".into(), "z.bin".into()],
            bytes(2, 40_000),
        ),
        (vec!["zero.txt".into()], Vec::new()),
    ];
    for (p, data) in &files {
        let mut path = root.join(MULTI);
        path.extend(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    std::fs::write(root.join(SINGLE), bytes(3, 50_000)).unwrap();
    files
}

/// Parse `torrent`, compare with the tools' hash, check layout and pieces.
fn check(torrent: &Path, save_dir: &Path, multi: bool) -> Metainfo {
    check_with(torrent, save_dir, multi, true)
}

/// [`check`]; `transmission` false skips transmission-show (Transmission
/// 3.00 cannot read libtorrent's hybrid v1+v2 torrents).
fn check_with(torrent: &Path, save_dir: &Path, multi: bool, transmission: bool) -> Metainfo {
    let m = Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap();
    let ours = m.info_hash.to_hex();
    if transmission {
        let theirs = transmission_hash(torrent);
        assert_eq!(ours, theirs, "{} vs transmission-show", torrent.display());
    }
    if have_tool("libtorrent") {
        let (lt_hash, lt_files) = libtorrent_info(torrent);
        assert_eq!(ours, lt_hash, "{} vs libtorrent", torrent.display());
        // same files, same order, same lengths, same padding
        let ours: Vec<(bool, u64, PathBuf)> = m
            .info
            .files
            .iter()
            .map(|f| (f.padding, f.length, m.info.disk_path(f)))
            .collect();
        let theirs: Vec<(bool, u64, PathBuf)> = lt_files
            .into_iter()
            .map(|(p, l, s)| (p, l, PathBuf::from(s)))
            .collect();
        assert_eq!(ours, theirs, "{}", torrent.display());
    }
    assert_eq!(m.info.multi_file, multi);
    assert_eq!(m.info.name, if multi { MULTI } else { SINGLE });
    assert_eq!(m.trackers(), vec![vec![TRACKER.to_string()]]);
    verify_pieces(&m, save_dir);
    m
}

#[test]
fn mktorrent_single_and_multi() {
    if !have_tool("mktorrent") || !have_tool("transmission-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_tree(root);
    for (name, multi) in [(MULTI, true), (SINGLE, false)] {
        let out = root.join(format!("mk-{multi}.torrent"));
        run(Command::new("mktorrent")
            .current_dir(root)
            .args(["-a", TRACKER, "-l", "15", "-o"])
            .arg(&out)
            .arg(name));
        let m = check(&out, root, multi);
        assert_eq!(m.info.piece_length, 32768);
    }
}

#[test]
fn transmission_create_single_and_multi() {
    if !have_tool("transmission-create") || !have_tool("transmission-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_tree(root);
    for (name, multi) in [(MULTI, true), (SINGLE, false)] {
        let out = root.join(format!("tr-{multi}.torrent"));
        run(Command::new("transmission-create")
            .current_dir(root)
            .args(["-t", TRACKER, "-s", "16", "-p", "-o"])
            .arg(&out)
            .arg(name));
        let m = check(&out, root, multi);
        assert!(m.info.private);
        assert_eq!(m.info.piece_length, 16384);
    }
}

#[test]
fn libtorrent_v1_and_hybrid() {
    if !have_tool("libtorrent") || !have_tool("transmission-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_tree(root);
    let script = r#"
import sys, libtorrent as lt
out, path, flags = sys.argv[1], sys.argv[2], int(sys.argv[3])
fs = lt.file_storage()
lt.add_files(fs, path)
ct = lt.create_torrent(fs, 16384, flags=flags)
ct.add_tracker(sys.argv[4])
lt.set_piece_hashes(ct, ".")
open(out, "wb").write(lt.bencode(ct.generate()))
"#;
    let v1_only = run(Command::new(PYTHON).args([
        "-c",
        "import libtorrent as lt; print(int(lt.create_torrent.v1_only))",
    ]));
    for (name, multi) in [(MULTI, true), (SINGLE, false)] {
        for (kind, flags) in [("v1", v1_only.trim()), ("hybrid", "0")] {
            let out = root.join(format!("lt-{kind}-{multi}.torrent"));
            run(Command::new(PYTHON)
                .current_dir(root)
                .args(["-c", script])
                .arg(&out)
                .arg(name)
                .arg(flags)
                .arg(TRACKER));
            let m = check_with(&out, root, multi, kind != "hybrid");
            if kind == "hybrid" && multi {
                assert!(
                    m.info.files.iter().any(|f| f.padding),
                    "hybrid has pad files"
                );
            }
        }
    }
}

#[test]
fn builder_output_is_accepted_with_the_same_hash() {
    if !have_tool("transmission-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files = make_tree(root);
    let mut content = Vec::new();
    for (_, d) in &files {
        content.extend_from_slice(d);
    }
    let bytes = MetainfoBuilder::new(MULTI)
        .files(files.iter().map(|(p, d)| (p.clone(), d.len() as u64)))
        .piece_length(32768)
        .pieces(piece_hashes(&content, 32768))
        .announce(TRACKER)
        .comment("built by bittern")
        .created_by("bittern")
        .creation_date(1_700_000_000)
        .build()
        .unwrap();
    let out = root.join("bittern.torrent");
    std::fs::write(&out, &bytes).unwrap();
    let m = check(&out, root, true);
    assert_eq!(Metainfo::from_bytes(&bytes).unwrap().info_hash, m.info_hash);

    // mktorrent writes the same info keys; given the same file order, its
    // info dictionary must be byte-identical to ours
    if have_tool("mktorrent") {
        let mk = root.join("mk.torrent");
        run(Command::new("mktorrent")
            .current_dir(root)
            .args(["-a", TRACKER, "-l", "15", "-o"])
            .arg(&mk)
            .arg(MULTI));
        let mk = Metainfo::from_bytes(&std::fs::read(&mk).unwrap()).unwrap();
        let order: Vec<_> = mk.info.files.iter().map(|f| f.path.clone()).collect();
        let mut content = Vec::new();
        for p in &order {
            let mut path = root.join(MULTI);
            path.extend(p);
            content.extend(std::fs::read(path).unwrap());
        }
        let ours = MetainfoBuilder::new(MULTI)
            .files(mk.info.files.iter().map(|f| (f.path.clone(), f.length)))
            .piece_length(32768)
            .pieces(piece_hashes(&content, 32768))
            .build_metainfo()
            .unwrap();
        assert_eq!(ours.info_bytes, mk.info_bytes);
        assert_eq!(ours.info_hash, mk.info_hash);
    }

    // single file, private, web seed, several tiers
    let data = std::fs::read(root.join(SINGLE)).unwrap();
    let single = MetainfoBuilder::new(SINGLE)
        .single_file(data.len() as u64)
        .piece_length(16384)
        .pieces(piece_hashes(&data, 16384))
        .trackers(vec![
            vec![TRACKER.into()],
            vec!["udp://127.0.0.1:6969".into()],
        ])
        .url_list(vec!["http://127.0.0.1:8080/files/".into()])
        .private(true)
        .build()
        .unwrap();
    let out = root.join("single.torrent");
    std::fs::write(&out, &single).unwrap();
    let m = Metainfo::from_bytes(&single).unwrap();
    assert_eq!(m.info_hash.to_hex(), transmission_hash(&out));
    if have_tool("libtorrent") {
        assert_eq!(m.info_hash.to_hex(), libtorrent_info(&out).0);
    }
    verify_pieces(&m, root);
    assert_eq!(m.trackers().len(), 2);
}
