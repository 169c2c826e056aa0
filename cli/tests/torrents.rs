//! create -> info -> verify, on real files.

use std::path::Path;
use std::time::Duration;

use bittern_wire::Metainfo;
use serde_json::Value;

use crate::util::*;

fn make_dir(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files = [
        ("album/cd1/01 – intro.flac", 40_000usize),
        ("album/cd1/02.flac", 70_001),
        ("album/cover.jpg", 5),
        ("album/zzz/empty", 0),
        ("album/ünïcode.txt", 33_333),
    ];
    files
        .iter()
        .enumerate()
        .map(|(i, (p, n))| {
            let data = random_file(&root.join(p), *n, i as u64);
            (p.trim_start_matches("album/").to_string(), data)
        })
        .collect()
}

#[test]
fn create_info_verify_multi_file() {
    let tmp = tempfile::tempdir().unwrap();
    let files = make_dir(tmp.path());
    let t = tmp.path().join("album.torrent");
    create(
        &tmp.path().join("album"),
        &t,
        &[
            "-t",
            "http://127.0.0.1:1/announce",
            "-t",
            "udp://127.0.0.1:2",
            "--piece-length",
            "16KiB",
            "--comment",
            "test album",
            "--web-seed",
            "http://127.0.0.1:3/files/",
            "--private",
        ],
    );
    // info --json: the documented keys, and the info hash of a re-parse
    let r = bittern(["info", "--json", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    assert_eq!(v["info_hash"], m.info_hash.to_hex());
    let hash = v["info_hash"].as_str().unwrap();
    assert!(hash.len() == 40 && hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    // a v1 torrent: no v2 hash, meta version 1
    assert_eq!(v["info_hash_v2"], Value::Null);
    assert_eq!(v["meta_version"], 1);
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    assert_eq!(v["name"], "album");
    assert_eq!(v["total_size"], total as u64);
    assert_eq!(v["piece_length"], 16384);
    assert_eq!(v["piece_count"], total.div_ceil(16384) as u64);
    assert_eq!(v["private"], true);
    assert_eq!(
        v["trackers"],
        serde_json::json!([["http://127.0.0.1:1/announce"], ["udp://127.0.0.1:2"]])
    );
    assert_eq!(
        v["web_seeds"],
        serde_json::json!(["http://127.0.0.1:3/files/"])
    );
    assert_eq!(v["comment"], "test album");
    // files sorted by path, with their lengths
    let listed: Vec<(String, u64)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["length"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, u64)> = files
        .iter()
        .map(|(p, d)| (p.clone(), d.len() as u64))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    // piece hashes are the SHA-1 of the concatenated files in that order
    let mut all = Vec::new();
    for (p, _) in &expected {
        all.extend(std::fs::read(tmp.path().join("album").join(p)).unwrap());
    }
    for (i, chunk) in all.chunks(16384).enumerate() {
        assert_eq!(
            m.info.pieces[i],
            bittern_storage::hash_blocks([chunk]),
            "piece {i}"
        );
    }

    // text info names the essentials
    let r = bittern(["info", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(0));
    for needle in [
        hash,
        "album/",
        "ünïcode.txt",
        "tier 2: udp://127.0.0.1:2",
        "private:       yes",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} not in\n{}", r.stdout);
    }

    // verify: complete
    let dir = tmp.path().to_str().unwrap();
    let r = bittern(["verify", t.to_str().unwrap(), "-d", dir]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r
        .stdout
        .contains(&format!("all {} pieces OK", total.div_ceil(16384))));

    // one flipped byte: exactly one bad piece, the file named, exit 3
    let victim = tmp.path().join("album/cd1/02.flac");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[50_000] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let r = bittern(["verify", t.to_str().unwrap(), "-d", dir]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stdout.contains(": 1 bad pieces of "), "{}", r.stdout);
    assert!(
        r.stdout.contains("album/cd1/02.flac (1 bad pieces: "),
        "{}",
        r.stdout
    );

    // a missing file is listed as missing
    std::fs::remove_file(tmp.path().join("album/cover.jpg")).unwrap();
    let r = bittern(["verify", t.to_str().unwrap(), "-d", dir]);
    assert_eq!(r.code, Some(3));
    assert!(
        r.stdout.contains("album/cover.jpg (missing)"),
        "{}",
        r.stdout
    );
}

#[test]
fn create_single_file_auto_piece_length() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_file(&tmp.path().join("data.bin"), 3 << 20, 9);
    let t = tmp.path().join("data.torrent");
    create(&tmp.path().join("data.bin"), &t, &[]);
    let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    assert!(!m.info.multi_file);
    assert_eq!(m.info.name, "data.bin");
    assert_eq!(m.info.total_length(), data.len() as u64);
    // 3 MiB: the smallest power of two giving at most 2000 pieces is 2 KiB,
    // clamped to 16 KiB
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(
        m.created_by.as_deref(),
        Some(concat!("bittern/", env!("CARGO_PKG_VERSION")))
    );
    // refuses to overwrite without --force
    let r = bittern([
        "create",
        tmp.path().join("data.bin").to_str().unwrap(),
        "-o",
        t.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("already exists"), "{r:?}");
    let r = bittern([
        "verify",
        t.to_str().unwrap(),
        "-d",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn info_on_magnet_links() {
    let r = bittern([
        "info",
        "--json",
        "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=thing&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["info_hash"], "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
    assert_eq!(v["name"], "thing");
    assert_eq!(
        v["trackers"],
        serde_json::json!([["http://127.0.0.1:6969/announce"]])
    );
}

/// `bittern info ... | head` whose reader is already gone: the command
/// stops quietly with exit 0 (as Unix tools do), no panic. The pipe's read
/// end is closed before bittern starts, so every write fails with EPIPE.
#[test]
fn info_into_a_closed_pipe_exits_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};
    let r = bittern([
        "info",
        "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=thing",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for json in [false, true] {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe() just returned these two descriptors, owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let mut cmd = Command::new(bin());
        cmd.arg("info");
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .arg("magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=thing")
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "json {json}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// More torrents than the display shows rows for: `bittern seed` prints one
/// summary line per interval (never a line per torrent), shows how many
/// are added while it adds them, and still reports each torrent seeding;
/// the same on the second start, from resume state.
#[test]
fn seeding_many_torrents_shows_one_summary_and_adding_progress() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut torrents = Vec::new();
    for i in 0..N {
        let name = format!("f{i:02}.bin");
        random_file(&data.join(&name), 20_000, i as u64);
        let t = dir.path().join(format!("{name}.torrent"));
        torrents.push(create(&data.join(&name), &t, &["-q"]).display().to_string());
    }
    for start in ["first", "second"] {
        let mut args: Vec<String> = ["seed", "-d", &data.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            [
                "--bind",
                "127.0.0.1",
                "-p",
                "0",
                "--status-interval",
                "100ms",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(torrents.iter().cloned());
        let mut p = Proc::spawn(cmd(&args));
        p.wait_stderr("the summary", Duration::from_secs(30), |l| {
            l == format!("{N} torrents: {N} seeding, 0 downloading, 0 checking; have 781.2 KiB of 781.2 KiB; down 0 B/s up 0 B/s peers 0")
        });
        p.signal(libc::SIGINT);
        let status = p.wait(Duration::from_secs(20));
        let r = p.finish(status);
        assert_eq!(r.code, Some(0), "{start}: {r:?}");
        let seeding = r
            .stdout
            .lines()
            .filter(|l| l.ends_with(": verified, seeding"))
            .count();
        assert_eq!(seeding, N, "{start}: {}", r.stdout);
        assert!(
            r.stderr
                .lines()
                .any(|l| l == format!("adding torrents: {N} of {N}")),
            "{start}: {}",
            r.stderr
        );
        assert!(
            !r.stderr
                .lines()
                .any(|l| l.starts_with("f0") || shows_progress(l)),
            "{start}: a line per torrent: {}",
            r.stderr
        );
    }
    assert_eq!(std::fs::read_dir(data.join(".bittern")).unwrap().count(), N);
}
