//! Committed torrents made by mktorrent, transmission-create and
//! libtorrent (see `data/make-fixtures.sh`): bittern's info hash must equal
//! the hash those tools reported, and every piece must verify against the
//! files in `data/sample/`. These run without any tool installed.

use std::path::PathBuf;

use bittern_wire::{bencode, Metainfo};

use crate::util::{data_dir, verify_pieces};

fn load(name: &str) -> Metainfo {
    let bytes = std::fs::read(data_dir().join(name)).unwrap();
    Metainfo::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn info_hash_equals_what_the_tools_reported() {
    let expected = std::fs::read_to_string(data_dir().join("expected.txt")).unwrap();
    let mut n = 0;
    for line in expected.lines() {
        let [file, hash, tool] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        assert_eq!(load(file).info_hash.to_hex(), hash, "{file} per {tool}");
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn sample_torrent_for_the_readme() {
    let m = load("sample.torrent");
    assert_eq!(m.info.name, "sample");
    assert!(m.info.multi_file);
    assert_eq!(
        m.announce.as_deref(),
        Some("http://127.0.0.1:6969/announce")
    );
    assert_eq!(
        m.trackers(),
        vec![vec!["http://127.0.0.1:6969/announce".to_string()]]
    );
    assert_eq!(m.comment.as_deref(), Some("bittern sample"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    assert_eq!(m.info.piece_length, 32768);
    let mut paths = m.info.file_paths();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            PathBuf::from("sample/README.txt"),
            PathBuf::from("sample/data/numbers.txt"),
            PathBuf::from("sample/data/ünïcødé.txt"),
        ]
    );
    verify_pieces(&m, &data_dir());
}

#[test]
fn every_fixture_verifies_against_its_files() {
    for (file, save) in [
        ("sample.torrent", ""),
        ("tr-multi.torrent", ""),
        ("lt-hybrid.torrent", ""),
        ("mk-single.torrent", "sample/data"),
        ("tr-single.torrent", "sample/data"),
        ("lt-single.torrent", "sample/data"),
    ] {
        let m = load(file);
        verify_pieces(&m, &data_dir().join(save));
    }
}

#[test]
fn tool_specific_fields() {
    let tr = load("tr-multi.torrent");
    assert_eq!(tr.comment.as_deref(), Some("cömment"));
    assert!(tr.created_by.unwrap().starts_with("Transmission/"));
    assert_eq!(tr.info.piece_length, 16384);
    let trs = load("tr-single.torrent");
    assert!(trs.info.private);
    assert!(!trs.info.multi_file);
    assert_eq!(trs.info.files[0].path, vec!["numbers.txt"]);
    let mk = load("mk-single.torrent");
    assert_eq!(mk.info.name, "ünïcødé.txt");
    // libtorrent's hybrid torrent carries BEP 47 padding files and v2 keys
    let hy = load("lt-hybrid.torrent");
    assert!(hy.info.files.iter().any(|f| f.padding));
    for f in hy.info.files.iter().filter(|f| f.padding) {
        assert_eq!(f.path[0], ".pad");
        assert!(f.attr.as_deref().unwrap().contains('p'));
    }
    let raw = bencode::decode(&hy.info_bytes).unwrap();
    assert!(raw.get(b"meta version").is_some());
}

#[test]
fn truncated_real_files_are_typed_errors() {
    for file in ["sample.torrent", "lt-hybrid.torrent", "tr-multi.torrent"] {
        let bytes = std::fs::read(data_dir().join(file)).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                Metainfo::from_bytes(&bytes[..cut]).is_err(),
                "{file} cut at {cut}"
            );
        }
    }
}
