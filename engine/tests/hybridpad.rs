//! A hybrid torrent (v1 + v2, BEP 52) carries BEP 47 padding files after
//! each file that does not end on a piece boundary, so that every file
//! starts a piece for its v2 tree while the SHA-1 pieces cover the
//! padding. Padding is zeros by definition: bittern downloads a hybrid's
//! files' bytes only, supplies the zeros when it checks the SHA-1 pieces,
//! and writes no padding file.

use std::time::Duration;

use bittern_engine::{TorrentOptions, TorrentState};
use bittern_wire::{MetaVersion, Metainfo, MetainfoBuilder};
use rand::{Rng, SeedableRng};

use crate::interop::{have_libtorrent, init_log, python, Proc};
use crate::util::{assert_same, seeding, session, tempdir, wait_state};

/// Small files in 256 KiB pieces (three quarters of the piece space is
/// padding): bittern leeches from a bittern seed, and neither side moves
/// a byte of the padding.
#[test]
fn hybrid_padding_files_are_not_downloaded() {
    let (src, dst) = (tempdir(), tempdir());
    const PIECE: u64 = 256 * 1024;
    // f2 ends mid-piece across two pieces; f3 fills its piece exactly;
    // f4 is last and padded too (as libtorrent writes hybrids)
    let sizes = [10_000usize, 70_000, 300_000, PIECE as usize, 5_000];
    let dir = src.path().join("hpads");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(47);
    let mut inputs = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let mut data = vec![0u8; *len];
        rng.fill(&mut data[..]);
        let path = dir.join(format!("f{i}.bin"));
        std::fs::write(&path, &data).unwrap();
        inputs.push((Some(path), *len as u64));
        let pad = (PIECE - *len as u64 % PIECE) % PIECE;
        if pad > 0 {
            inputs.push((None, pad));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (pieces, files) =
        bittern_storage::hash_files_hybrid(&inputs, PIECE, &pool, &|_, _| {}).unwrap();
    let mut b = MetainfoBuilder::new("hpads")
        .piece_length(PIECE)
        .version(MetaVersion::Hybrid)
        .pieces(pieces)
        .pieces_roots(files.iter().map(|f| f.root).collect())
        .piece_layers(
            files
                .iter()
                .filter_map(|f| Some((f.root?, f.piece_layer.clone())))
                .filter(|(_, l)| !l.is_empty())
                .collect(),
        );
    for (i, len) in sizes.iter().enumerate() {
        b = b.file(vec![format!("f{i}.bin")], *len as u64);
    }
    let m = Metainfo::from_bytes(&b.build().unwrap()).unwrap();
    assert!(m.info.version.has_v1() && m.info.version.has_v2());
    let pads: u64 = m
        .info
        .files
        .iter()
        .filter(|f| f.padding)
        .map(|f| f.length)
        .sum();
    let payload: u64 = sizes.iter().map(|&n| n as u64).sum();
    // pieces: f0, f1, f2 (two), f3, f4
    assert_eq!(m.info.piece_count(), 6);
    assert_eq!(payload + pads, 6 * PIECE, "the padding is in the v1 layout");
    assert!(pads > 3 * PIECE);
    let (seeder, seeding_t) = seeding(&m, src.path());
    let s = session();
    let h = s
        .add_torrent(
            m.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![seeder.local_addr()],
                ..Default::default()
            },
        )
        .unwrap();
    wait_state(&h, TorrentState::Seeding, Duration::from_secs(60));
    let real: Vec<_> = (m.info.files.iter())
        .filter(|f| !f.padding)
        .map(|f| m.info.disk_path(f))
        .collect();
    assert_eq!(real.len(), sizes.len());
    assert_same(src.path(), dst.path(), &real);
    let st = h.status();
    assert_eq!(st.hash_failures, 0);
    assert_eq!(st.pieces_have, 6);
    assert_eq!(
        st.downloaded, payload,
        "the files' bytes, not the {pads} bytes of padding after them"
    );
    // the seeder was asked for the files' bytes only: no request touched
    // a padding file's range
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seeding_t.status().uploaded < payload && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seeding_t.status().uploaded, payload);
    // and no padding file was written: the torrent's directory holds the
    // five files alone
    let mut on_disk: Vec<_> = walk(&dst.path().join("hpads"));
    on_disk.sort();
    let want: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}.bin")).collect();
    assert_eq!(on_disk, want);
}

/// libtorrent makes a hybrid torrent (its BEP 47 padding files between
/// the files) and seeds it; bittern downloads the files' bytes only, with
/// blocks hashed as they arrive (the padding's zeros appended to the
/// SHA-1) and without (read back, the padding read as zeros).
#[test]
fn hybrid_from_libtorrent_skips_its_padding() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, work) = (tempdir(), tempdir());
    let sizes = [10_000usize, 70_000, 300_000, 5_000];
    let dir = src.path().join("ltpads");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(52);
    for (i, len) in sizes.iter().enumerate() {
        let mut data = vec![0u8; *len];
        rng.fill(&mut data[..]);
        std::fs::write(dir.join(format!("f{i}.bin")), &data).unwrap();
    }
    let torrent = work.path().join("ltpads.torrent");
    let mut made = Proc::spawn(
        "libtorrent creator",
        python(
            "lt_create.py",
            &[
                dir.as_os_str(),
                torrent.as_os_str(),
                "hybrid".as_ref(),
                "262144".as_ref(),
            ],
        ),
        work.path().join("lt_create.log"),
    );
    made.expect_line("INFO_HASH ", Duration::from_secs(60));
    let m = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(m.info.version, MetaVersion::Hybrid);
    let pads: u64 = m
        .info
        .files
        .iter()
        .filter(|f| f.padding)
        .map(|f| f.length)
        .sum();
    assert!(pads > 256 * 1024, "libtorrent's hybrid has padding files");
    let payload: u64 = sizes.iter().map(|&n| n as u64).sum();
    let (lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent seeder",
        bittern_testkit::libtorrent::seed_cmd(&torrent, src.path()),
        work.path().join("lt_seed.log"),
    );
    let real: Vec<_> = (m.info.files.iter())
        .filter(|f| !f.padding)
        .map(|f| m.info.disk_path(f))
        .collect();
    assert_eq!(real.len(), sizes.len());
    for inline_hashing in [true, false] {
        let dst = tempdir();
        let s = bittern_engine::Session::new(bittern_engine::SessionConfig {
            inline_hashing,
            ..crate::util::config()
        })
        .unwrap();
        let h = s
            .add_torrent(
                m.clone(),
                dst.path(),
                TorrentOptions {
                    peers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
                    ..Default::default()
                },
            )
            .unwrap();
        crate::interop::wait_for(&h, TorrentState::Seeding, Duration::from_secs(60), &lt);
        assert_same(src.path(), dst.path(), &real);
        let st = h.status();
        assert_eq!(st.hash_failures, 0, "inline hashing {inline_hashing}");
        assert_eq!(
            st.downloaded, payload,
            "inline hashing {inline_hashing}: the files' bytes, not the {pads} bytes of padding"
        );
        let mut on_disk = walk(&dst.path().join("ltpads"));
        on_disk.sort();
        let want: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}.bin")).collect();
        assert_eq!(on_disk, want, "no padding file written");
    }
}

/// Every file under `dir`, as paths relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}
