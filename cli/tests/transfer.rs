//! Moving data: swarm, seed -> download by --peer and through
//! `bittern tracker`, and Ctrl-C in the middle of a download.

use std::time::Duration;

use crate::util::*;

#[test]
fn swarm_with_three_leechers() {
    let r = run_limited(
        cmd([
            "swarm",
            "--size",
            "3MiB",
            "--leechers",
            "3",
            "--piece-length",
            "32KiB",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    for k in 1..=3 {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("leecher {k}: ")))
            .unwrap_or_else(|| panic!("no leecher {k} line in {}", r.stdout));
        assert!(line.ends_with("data OK"), "{line}");
        let rate: f64 = line
            .split(" = ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rate > 0.0, "{line}");
    }
    assert!(
        r.stdout.contains("total: 9.0 MiB delivered"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("swarm OK"), "{}", r.stdout);
    // cleaned up
    let dir = r
        .stderr
        .lines()
        .find_map(|l| l.split(" in ").last().filter(|_| l.starts_with("swarm: ")))
        .expect("swarm names its directory");
    assert!(
        !std::path::Path::new(dir.trim()).exists(),
        "{dir} left behind"
    );
}

#[test]
fn download_from_seed_by_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("share/a.bin"), 1_000_003, 1);
    random_file(&src.join("share/sub/b.bin"), 600_000, 2);
    let t = create(
        &src.join("share"),
        &tmp.path().join("share.torrent"),
        &["--piece-length", "32KiB"],
    );
    let (mut seed, port) = start_seed(&t, &src, &[]);

    let dst = tmp.path().join("dst");
    let r = download(
        t.to_str().unwrap(),
        dst.to_str().unwrap(),
        &["--peer", &format!("127.0.0.1:{port}"), "--exit-on-complete"],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(tree(&dst.join("share")), tree(&src.join("share")));
    let (downloaded, have, of) = summary(&r.stdout);
    assert_eq!((have, of), (1_600_003, 1_600_003));
    assert!(downloaded >= 1_600_003, "{downloaded}");

    // SIGTERM stops the seeder gracefully: exit 0 with its summary
    seed.signal(libc::SIGTERM);
    let status = seed.wait(Duration::from_secs(20));
    let out = seed.finish(status);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("share: downloaded 0 bytes"),
        "{}",
        out.stdout
    );
}

#[test]
fn download_through_bittern_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = Proc::spawn(cmd(["tracker", "--bind", "127.0.0.1", "-p", "0"]));
    let url = tracker.wait_line("announce URL: ", Duration::from_secs(20));
    let url = url.trim_start_matches("announce URL: ").trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/announce"),
        "{url}"
    );

    let src = tmp.path().join("src");
    let data = random_file(&src.join("movie.bin"), 2_000_000, 3);
    let t = create(
        &src.join("movie.bin"),
        &tmp.path().join("movie.torrent"),
        &["-t", &url],
    );
    let (_seed, _port) = start_seed(&t, &src, &[]);

    let dst = tmp.path().join("dst");
    let r = download(
        t.to_str().unwrap(),
        dst.to_str().unwrap(),
        &["--exit-on-complete"],
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read(dst.join("movie.bin")).unwrap(), data);
}

#[test]
fn ctrl_c_then_resume_downloads_only_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = 8 << 20;
    let data = random_file(&src.join("big.bin"), total, 4);
    let t = create(
        &src.join("big.bin"),
        &tmp.path().join("big.torrent"),
        &["--piece-length", "64KiB"],
    );
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("dst");
    let args = |limit: bool| {
        let mut a = vec![
            "download".to_string(),
            t.display().to_string(),
            "-d".into(),
            dst.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "0".into(),
            "--peer".into(),
            format!("127.0.0.1:{port}"),
            "--exit-on-complete".into(),
        ];
        if limit {
            a.extend(["--download-limit".to_string(), "512KiB/s".into()]);
        }
        a
    };

    // first run: rate limited, interrupted once some pieces are verified
    let mut c = cmd(args(true));
    c.args(["--status-interval", "100ms"]);
    let mut first = Proc::spawn(c);
    first.wait_line("listening on", Duration::from_secs(20));
    first.wait_stderr("progress above 0%", Duration::from_secs(30), shows_progress);
    first.signal(libc::SIGINT);
    let status = first.wait(Duration::from_secs(30));
    let out = first.finish(status);
    assert_eq!(out.code, Some(130), "{out:?}");
    let (down1, have1, of) = summary(&out.stdout);
    assert_eq!(of, total as u64);
    assert!(
        have1 > 0 && have1 < of,
        "first run had {have1} of {of}: {out:?}"
    );
    assert!(down1 > 0, "{out:?}");
    let resume = dst.join(".bittern").join(format!(
        "{}.resume",
        bittern_wire::Metainfo::from_bytes(&std::fs::read(&t).unwrap())
            .unwrap()
            .info_hash
            .to_hex()
    ));
    assert!(resume.exists(), "no resume file at {}", resume.display());

    // second run: finishes, fetching only what was not verified before
    let r = run_limited(cmd(args(false)), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{r:?}");
    let (down2, have2, _) = summary(&r.stdout);
    assert_eq!(have2, total as u64);
    eprintln!(
        "interrupted with {have1} of {total} bytes verified; the second run downloaded {down2}"
    );
    assert!(
        down2 <= total as u64 - have1,
        "second run downloaded {down2}, but only {} were missing",
        total as u64 - have1
    );
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), data);
}

#[test]
fn only_selected_files_then_seed_for_a_while() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("set/big.iso"), 900_000, 11);
    random_file(&src.join("set/docs/readme.md"), 40_000, 12);
    random_file(&src.join("set/docs/z.txt"), 700_000, 13);
    let t = create(
        &src.join("set"),
        &tmp.path().join("set.torrent"),
        &["--piece-length", "16KiB"],
    );
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("dst");
    let started = std::time::Instant::now();
    let r = download(
        t.to_str().unwrap(),
        dst.to_str().unwrap(),
        &[
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--only",
            "docs/read*",
            "--seed-time",
            "1s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        std::fs::read(dst.join("set/docs/readme.md")).unwrap(),
        std::fs::read(src.join("set/docs/readme.md")).unwrap()
    );
    // the unselected files were not fetched (beyond the pieces they share
    // with the selected one)
    let (downloaded, have, wanted) = summary(&r.stdout);
    assert_eq!(have, wanted);
    assert!(
        downloaded < 200_000,
        "downloaded {downloaded} for a 40 kB selection"
    );
    let z = std::fs::metadata(dst.join("set/docs/z.txt")).map_or(0, |m| m.len());
    let big = std::fs::read(dst.join("set/big.iso")).unwrap_or_default();
    assert!(
        big.iter().filter(|&&b| b != 0).count() < 40_000,
        "big.iso was downloaded"
    );
    assert!(z <= 700_000);
}

/// `bittern download MAGNET --peer ... --save-torrent FILE`: the metadata
/// comes from a bittern seeder, the data is identical, the progress line
/// says "fetching metadata (N peers)" first, and the written .torrent (and
/// the one kept under `<DIR>/.bittern/`) has the magnet's info hash.
#[test]
fn download_magnet_by_peer_and_save_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("mag/a.bin"), 900_001, 7);
    random_file(&src.join("mag/b.bin"), 300_000, 8);
    let t = create(
        &src.join("mag"),
        &tmp.path().join("mag.torrent"),
        &["--piece-length", "16KiB"],
    );
    let info = bittern(["info", "--json", t.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    let hash = v["info_hash"].as_str().unwrap().to_string();
    let (mut seed, port) = start_seed(&t, &src, &[]);

    let dst = tmp.path().join("dst");
    let saved = tmp.path().join("fetched.torrent");
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=mag");
    let r = download(
        &magnet,
        dst.to_str().unwrap(),
        &[
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--exit-on-complete",
            "--save-torrent",
            saved.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("fetching metadata ("), "{}", r.stderr);
    assert_eq!(tree(&dst.join("mag")), tree(&src.join("mag")));
    let (_, have, of) = summary(&r.stdout);
    assert_eq!((have, of), (1_200_001, 1_200_001));
    for file in [saved, dst.join(".bittern").join(format!("{hash}.torrent"))] {
        let info = bittern(["info", "--json", file.to_str().unwrap()]);
        assert_eq!(info.code, Some(0), "{info:?}");
        let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        assert_eq!(v["info_hash"], hash.as_str(), "{}", file.display());
    }
    seed.signal(libc::SIGTERM);
    let status = seed.wait(Duration::from_secs(20));
    assert_eq!(seed.finish(status).code, Some(0));
}

#[test]
fn download_from_a_super_seeder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("ss.bin"), 900_001, 61);
    let t = create(
        &src.join("ss.bin"),
        &tmp.path().join("ss.torrent"),
        &["--piece-length", "32KiB"],
    );
    let (mut seed, port) = start_seed(&t, &src, &["--super-seed"]);
    let dst = tmp.path().join("dst");
    let r = download(
        t.to_str().unwrap(),
        dst.to_str().unwrap(),
        &["--peer", &format!("127.0.0.1:{port}"), "--exit-on-complete"],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        std::fs::read(dst.join("ss.bin")).unwrap(),
        std::fs::read(src.join("ss.bin")).unwrap()
    );
    seed.signal(libc::SIGTERM);
    let status = seed.wait(Duration::from_secs(20));
    let out = seed.finish(status);
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// `--bind` takes IPv6 addresses, repeated: a seed on 127.0.0.1 and ::1
/// (one port), a download bound to ::1 only that reaches it at `[::1]`.
#[test]
fn download_over_ipv6_loopback_with_repeated_bind() {
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !bittern_testkit::require("an IPv6 loopback (::1)", v6) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let data = random_file(&src.join("six.bin"), 700_001, 6);
    let t = create(&src.join("six.bin"), &tmp.path().join("six.torrent"), &[]);
    let (_seed, port) = start_seed(&t, &src, &["--bind", "::1"]);
    // Both addresses accept on the one port.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::net::TcpStream::connect(("::1", port)).unwrap();

    let dst = tmp.path().join("dst");
    let r = run_limited(
        cmd([
            "download",
            t.to_str().unwrap(),
            "-d",
            dst.to_str().unwrap(),
            "--bind",
            "::1",
            "-p",
            "0",
            "--peer",
            &format!("[::1]:{port}"),
            "--exit-on-complete",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let listening = r
        .stdout
        .lines()
        .find(|l| l.starts_with("listening on "))
        .unwrap_or_default();
    assert!(
        listening.starts_with("listening on [::1]:") && !listening.contains(','),
        "{listening}"
    );
    assert!(std::fs::read(dst.join("six.bin")).unwrap() == data);
    let (downloaded, have, of) = summary(&r.stdout);
    assert_eq!((have, of), (700_001, 700_001));
    assert!(downloaded >= 700_001, "{downloaded}");
}
