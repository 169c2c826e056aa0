//! BitTorrent v2 and hybrid torrents made now by libtorrent
//! (`testkit/scripts/lt_v2.py`): bittern's v1 and v2 info hashes, files, roots and
//! piece layers must equal libtorrent's, and `MetainfoBuilder` given the
//! same roots and layers must write a byte-identical info dictionary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bittern_wire::{MetaVersion, Metainfo, MetainfoBuilder};

use crate::util::{have_tool, run, verify_pieces, PYTHON};

const MULTI: &str = "v2 Ünïcødé";
const SINGLE: &str = "single файл.bin";

fn bytes(seed: u32, len: usize) -> Vec<u8> {
    bittern_testkit::xorshift_bytes(seed, len)
}

/// Files not a multiple of the piece size, an empty one in the middle and
/// one sorting last, nested directories, a file of exactly two pieces at
/// 32 KiB, and a single file.
fn make_tree(root: &Path) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.txt", b"hello v2\n".to_vec()),
        ("b-empty", Vec::new()),
        ("dir/données.bin", bytes(1, 70_001)),
        ("dir/深い/z.bin", bytes(2, 40_000)),
        ("exact.bin", bytes(3, 65_536)),
        ("zz-empty", Vec::new()),
    ];
    for (p, data) in &files {
        let path = root.join(MULTI).join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    std::fs::write(root.join(SINGLE), bytes(4, 100_000)).unwrap();
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What libtorrent reports about a torrent it made.
struct Lt {
    v1: Option<String>,
    v2: String,
    /// (padding, length, root hex or "-", path)
    files: Vec<(bool, u64, String, String)>,
    layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
}

fn libtorrent(dir: &Path, name: &str, kind: &str, piece_length: u64) -> (PathBuf, Lt) {
    let out = dir.join(format!("lt-{kind}-{piece_length}-{}.torrent", name.len()));
    let script = bittern_testkit::libtorrent::script("lt_v2.py");
    let text = run(Command::new(PYTHON)
        .current_dir(dir)
        .arg(script)
        .arg(&out)
        .args([name, kind, &piece_length.to_string()]));
    let mut lt = Lt {
        v1: None,
        v2: String::new(),
        files: Vec::new(),
        layers: BTreeMap::new(),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        match f[0] {
            "v1" => lt.v1 = (f[1] != "-").then(|| f[1].to_owned()),
            "v2" => lt.v2 = f[1].to_owned(),
            "file" => lt.files.push((
                f[1] == "1",
                f[2].parse().unwrap(),
                f[3].to_owned(),
                f[4].to_owned(),
            )),
            "layer" => {
                let l = unhex(f[2])
                    .chunks(32)
                    .map(|c| c.try_into().unwrap())
                    .collect();
                lt.layers.insert(unhex(f[1]).try_into().unwrap(), l);
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    (out, lt)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check(dir: &Path, name: &str, kind: &str, piece_length: u64) {
    let what = format!("{kind} {name} {piece_length}");
    let (path, lt) = libtorrent(dir, name, kind, piece_length);
    let raw = std::fs::read(&path).unwrap();
    let m = Metainfo::from_bytes(&raw).unwrap_or_else(|e| panic!("{what}: {e}"));
    let hybrid = kind == "hybrid";
    assert_eq!(
        m.info.version,
        if hybrid {
            MetaVersion::Hybrid
        } else {
            MetaVersion::V2
        }
    );
    // info hashes
    let v2 = m.info_hash_v2.expect("v2 hash");
    assert_eq!(v2.to_hex(), lt.v2, "{what}: v2 info hash");
    assert_eq!(m.info_hash_v1().map(|h| h.to_hex()), lt.v1, "{what}: v1");
    if hybrid {
        assert_eq!(Some(m.info_hash.to_hex()), lt.v1);
    } else {
        assert_eq!(m.info_hash, v2.truncated(), "{what}: wire hash");
    }
    // files, roots and padding: libtorrent shows a v2-only torrent's tail
    // padding too, which bittern leaves out (the last piece is short)
    let ours: Vec<(bool, u64, String, String)> = m
        .info
        .files
        .iter()
        .map(|f| {
            let root = f.pieces_root.map_or("-".to_string(), |r| hex(&r));
            let p = m.info.disk_path(f).to_string_lossy().into_owned();
            (f.padding, f.length, root, p)
        })
        .collect();
    let mut theirs = lt.files.clone();
    if !hybrid && theirs.last().is_some_and(|f| f.0) {
        theirs.pop();
    }
    if !hybrid {
        // libtorrent names padding under the torrent's directory
        for (ours, theirs) in ours.iter().zip(theirs.iter_mut()) {
            if ours.0 && theirs.0 {
                theirs.3.clone_from(&ours.3);
            }
        }
    }
    assert_eq!(ours, theirs, "{what}: files");
    assert!(m.info.files.iter().any(|f| f.pieces_root.is_some()));
    // piece layers
    assert_eq!(m.piece_layers, lt.layers, "{what}: piece layers");
    for f in m.info.files.iter().filter(|f| f.length > piece_length) {
        let layer = m.piece_layer(f).expect("layer of a multi-piece file");
        assert_eq!(layer.len() as u64, f.length.div_ceil(piece_length));
    }
    if hybrid {
        verify_pieces(&m, dir);
    }
    // the builder, given the same files, roots and layers, writes the same
    // info dictionary byte for byte
    let real: Vec<_> = m.info.files.iter().filter(|f| !f.padding).collect();
    let mut b = MetainfoBuilder::new(&m.info.name)
        .piece_length(piece_length)
        .version(m.info.version)
        .pieces_roots(real.iter().map(|f| f.pieces_root).collect())
        .piece_layers(m.piece_layers.clone())
        .pieces(m.info.pieces.clone());
    b = if m.info.multi_file {
        b.files(real.iter().map(|f| (f.path.clone(), f.length)))
    } else {
        b.single_file(real[0].length)
    };
    let built = b.build_metainfo().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&built.info_bytes),
        String::from_utf8_lossy(&m.info_bytes),
        "{what}: info dictionaries"
    );
    assert_eq!(built.info_hash_v2, m.info_hash_v2);
    assert_eq!(built.info_hash, m.info_hash);
    assert_eq!(built.piece_layers, m.piece_layers);
}

#[test]
fn libtorrent_v2_and_hybrid_equal_ours() {
    if !have_tool("libtorrent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    for kind in ["v2", "hybrid"] {
        for piece_length in [16384u64, 32768] {
            for name in [MULTI, SINGLE] {
                check(dir.path(), name, kind, piece_length);
            }
        }
    }
}

mod hostile {
    //! Hostile v2 fields, from the committed libtorrent hybrid fixture
    //! edited one way at a time: each is a typed error, never a panic.

    use bittern_wire::bencode::{self, Error as BError, Value};
    use bittern_wire::{MetaVersion, Metainfo, MetainfoError};

    use crate::util::data_dir;

    fn fixture() -> Value {
        let raw = std::fs::read(data_dir().join("lt-hybrid.torrent")).unwrap();
        bencode::decode(&raw).unwrap()
    }

    fn dict(v: &mut Value) -> &mut std::collections::BTreeMap<Vec<u8>, Value> {
        match v {
            Value::Dict(d) => d,
            other => panic!("not a dict: {other:?}"),
        }
    }

    fn info(v: &mut Value) -> &mut std::collections::BTreeMap<Vec<u8>, Value> {
        dict(dict(v).get_mut(&b"info"[..]).unwrap())
    }

    fn parse(v: &Value) -> Result<Metainfo, MetainfoError> {
        Metainfo::from_bytes(&bencode::encode(v))
    }

    fn edited(f: impl FnOnce(&mut Value)) -> Result<Metainfo, MetainfoError> {
        let mut v = fixture();
        f(&mut v);
        parse(&v)
    }

    /// The fixture's one piece layer (of `data/numbers.txt`, 2 pieces).
    fn layer(v: &mut Value) -> &mut Vec<u8> {
        let layers = dict(dict(v).get_mut(&b"piece layers"[..]).unwrap());
        assert_eq!(layers.len(), 1);
        match layers.values_mut().next().unwrap() {
            Value::Bytes(b) => b,
            other => panic!("{other:?}"),
        }
    }

    fn v1_file(v: &mut Value, i: usize) -> &mut std::collections::BTreeMap<Vec<u8>, Value> {
        match info(v).get_mut(&b"files"[..]).unwrap() {
            Value::List(l) => dict(&mut l[i]),
            other => panic!("{other:?}"),
        }
    }

    fn tree(v: &mut Value) -> &mut std::collections::BTreeMap<Vec<u8>, Value> {
        dict(info(v).get_mut(&b"file tree"[..]).unwrap())
    }

    #[test]
    fn the_fixture_parses_as_hybrid() {
        let m = parse(&fixture()).unwrap();
        assert_eq!(m.info.version, MetaVersion::Hybrid);
        assert_eq!(m.piece_layers.len(), 1);
        assert_eq!(
            m.info
                .files
                .iter()
                .filter(|f| f.pieces_root.is_some())
                .count(),
            3
        );
    }

    #[test]
    fn piece_layers() {
        let reason = |r: Result<Metainfo, MetainfoError>| match r {
            Err(MetainfoError::InvalidPieceLayer { path, reason }) => {
                assert_eq!(path, "data/numbers.txt");
                reason
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(edited(|v| layer(v)[40] ^= 1)),
            "does not hash to the pieces root"
        );
        assert_eq!(
            reason(edited(|v| {
                layer(v).pop();
            })),
            "length not a multiple of 32"
        );
        assert_eq!(
            reason(edited(|v| layer(v).truncate(32))),
            "wrong number of hashes for the file's pieces"
        );
        assert_eq!(
            reason(edited(|v| {
                let l = layer(v);
                let copy = l.clone();
                l.extend(copy);
            })),
            "wrong number of hashes for the file's pieces"
        );
        assert_eq!(
            reason(edited(|v| {
                dict(v).remove(&b"piece layers"[..]);
            })),
            "missing"
        );
        assert_eq!(
            edited(|v| {
                dict(v).insert(b"piece layers".to_vec(), Value::Int(1));
            })
            .unwrap_err(),
            MetainfoError::WrongType("piece layers")
        );
    }

    #[test]
    fn hybrid_halves_that_disagree() {
        let reason = |r: Result<Metainfo, MetainfoError>| match r {
            Err(MetainfoError::HybridMismatch { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        // a v1 length that differs
        assert_eq!(
            reason(edited(|v| {
                v1_file(v, 0).insert(b"length".to_vec(), Value::Int(80));
            })),
            "different length"
        );
        // a v1 path that differs
        assert_eq!(
            reason(edited(|v| {
                v1_file(v, 2).insert(
                    b"path".to_vec(),
                    Value::List(vec![Value::from("data"), Value::from("other.txt")]),
                );
            })),
            "different path"
        );
        // padding of the wrong size
        assert_eq!(
            reason(edited(|v| {
                v1_file(v, 1).insert(b"length".to_vec(), Value::Int(16304));
            })),
            "wrong padding after it"
        );
        // padding missing between files (the pieces are then off too)
        assert_eq!(
            reason(edited(|v| {
                if let Some(Value::List(l)) = info(v).get_mut(&b"files"[..]) {
                    l.remove(1);
                }
            })),
            "no padding after it"
        );
        // a file only in v1
        assert_eq!(
            reason(edited(|v| {
                if let Some(Value::List(l)) = info(v).get_mut(&b"files"[..]) {
                    let extra = l[0].clone();
                    l.push(extra);
                }
            })),
            "extra entries in the v1 files"
        );
        // a file only in v2
        assert_eq!(
            reason(edited(|v| {
                let file = tree(v).get(&b"README.txt"[..]).unwrap().clone();
                tree(v).insert(b"zzz.txt".to_vec(), file);
            })),
            "missing from the v1 files"
        );
    }

    #[test]
    fn bad_file_trees() {
        let err = |f: fn(&mut Value)| edited(f).unwrap_err();
        assert_eq!(
            err(|v| {
                info(v).insert(b"meta version".to_vec(), Value::Int(3));
            }),
            MetainfoError::UnsupportedMetaVersion(3)
        );
        assert!(matches!(
            err(|v| {
                let file = tree(v).get(&b"README.txt"[..]).unwrap().clone();
                tree(v).insert(b"..".to_vec(), file);
            }),
            MetainfoError::UnsafePath { .. }
        ));
        assert!(matches!(
            err(|v| {
                let readme = dict(tree(v).get_mut(&b"README.txt"[..]).unwrap());
                readme.insert(b"extra".to_vec(), Value::Dict(Default::default()));
            }),
            MetainfoError::InvalidFileTree {
                reason: "both a file and a directory",
                ..
            }
        ));
        assert!(matches!(
            err(|v| {
                let readme = dict(tree(v).get_mut(&b"README.txt"[..]).unwrap());
                let leaf = dict(readme.get_mut(&b""[..]).unwrap());
                leaf.insert(b"pieces root".to_vec(), Value::Bytes(vec![0; 31]));
            }),
            MetainfoError::InvalidFileTree {
                reason: "pieces root is not 32 bytes",
                ..
            }
        ));
        assert!(matches!(
            err(|v| {
                let readme = dict(tree(v).get_mut(&b"README.txt"[..]).unwrap());
                dict(readme.get_mut(&b""[..]).unwrap()).remove(&b"pieces root"[..]);
            }),
            MetainfoError::InvalidFileTree {
                reason: "missing pieces root",
                ..
            }
        ));
        assert!(matches!(
            err(|v| {
                tree(v).insert(b"x".to_vec(), Value::Int(1));
            }),
            MetainfoError::InvalidFileTree {
                reason: "not a dictionary",
                ..
            }
        ));
        // v2 pieces must be a power of two of at least 16 KiB
        assert_eq!(
            err(|v| {
                info(v).insert(b"piece length".to_vec(), Value::Int(8192));
            }),
            MetainfoError::InvalidPieceLength(8192)
        );
        assert_eq!(
            err(|v| {
                info(v).remove(&b"file tree"[..]);
            }),
            MetainfoError::MissingField("file tree")
        );
        // v2-only: drop the v1 half; still a valid torrent
        let m = edited(|v| {
            info(v).remove(&b"pieces"[..]);
            info(v).remove(&b"files"[..]);
        })
        .unwrap();
        assert_eq!(m.info.version, MetaVersion::V2);
        assert_eq!(m.info_hash, m.info_hash_v2.unwrap().truncated());
        assert_eq!(m.info_hash_v1(), None);
        assert!(m.info.pieces.is_empty());
        // README (81) pad, numbers (23893) pad, ünïcødé (47) without tail pad
        let lens: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
        assert_eq!(lens, vec![81, 16303, 23893, 8875, 47]);
        assert_eq!(m.info.piece_count(), 4);
        assert_eq!(m.info.piece_len(3), 47);
    }

    #[test]
    fn deep_and_huge_file_trees() {
        // 10,000 nested directories: the reader's depth limit stops it
        let mut t = b"d4:infod9:file tree".to_vec();
        for _ in 0..10_000 {
            t.extend_from_slice(b"d1:a");
        }
        t.extend_from_slice(b"d0:d6:lengthi1eee");
        t.extend(std::iter::repeat_n(b'e', 10_000));
        t.extend_from_slice(b"12:meta versioni2e4:name1:x12:piece lengthi16384eee");
        assert!(matches!(
            Metainfo::from_bytes(&t),
            Err(MetainfoError::Bencode(BError::TooDeep(_)))
        ));
        // 1,000,000 empty files: within the reader's limits (about 4
        // values each); parsed as a million zero-length files, no pieces.
        // Unoptimised, the bencode reader alone takes 7 s for them, so a
        // debug build checks 200,000.
        let n = if cfg!(debug_assertions) {
            200_000
        } else {
            1_000_000
        };
        let mut t = b"d4:infod9:file treed".to_vec();
        for i in 0..n {
            t.extend_from_slice(format!("7:{i:07}d0:d6:lengthi0eee").as_bytes());
        }
        t.extend_from_slice(b"e12:meta versioni2e4:name1:x12:piece lengthi16384eee");
        let start = std::time::Instant::now();
        let m = Metainfo::from_bytes(&t).unwrap();
        eprintln!("{n} empty files parsed in {:?}", start.elapsed());
        assert_eq!(m.info.files.len(), n as usize);
        assert_eq!((m.info.total_length(), m.info.piece_count()), (0, 0));
    }
}
