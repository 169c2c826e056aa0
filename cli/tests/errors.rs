//! Bad input: one clear line on stderr, the documented exit code, no
//! backtrace, nothing on disk damaged.

use std::net::TcpListener;
use std::path::Path;

use crate::util::*;

/// One line, `bittern: error: ...` containing every needle; no panic or backtrace.
fn assert_one_error_line(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, Some(code), "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {r:?}");
    assert!(lines[0].starts_with("bittern: error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("backtrace"));
}

fn small_torrent(dir: &Path) -> std::path::PathBuf {
    random_file(&dir.join("src/f.bin"), 50_000, 7);
    create(&dir.join("src/f.bin"), &dir.join("f.torrent"), &[])
}

#[test]
fn missing_torrent_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.torrent");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["info", m],
        vec!["verify", m],
        vec![
            "download",
            m,
            "-d",
            tmp.path().to_str().unwrap(),
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
        ],
        vec!["seed", m, "-p", "0", "--bind", "127.0.0.1"],
    ] {
        let r = bittern(&args);
        assert_one_error_line(&r, 2, &["cannot read", m, "No such file"]);
    }
    // and nothing was created
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    let r = bittern(["create", tmp.path().join("nothing").to_str().unwrap()]);
    assert_one_error_line(&r, 2, &["cannot read", "nothing"]);
}

#[test]
fn not_a_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.torrent");
    std::fs::write(&junk, b"this is not bencode").unwrap();
    for cmd in ["info", "verify", "download"] {
        let r = bittern([cmd, junk.to_str().unwrap()]);
        assert_one_error_line(&r, 2, &["junk.torrent is not a valid torrent file"]);
    }
    // a directory is not a torrent either
    let r = bittern(["info", tmp.path().to_str().unwrap()]);
    assert_one_error_line(&r, 2, &["is a directory"]);
    assert_eq!(std::fs::read(&junk).unwrap(), b"this is not bencode");
}

#[test]
fn bad_magnet_link() {
    for bad in [
        "magnet:?xt=urn:btih:1234",
        "magnet:?dn=no-hash",
        "magnet:?xt=urn:btih:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        let r = bittern(["info", bad]);
        assert_one_error_line(&r, 2, &["invalid magnet link"]);
    }
    let r = bittern(["download", "magnet:?xt=urn:btih:1234", "-p", "0"]);
    assert_one_error_line(&r, 2, &["invalid magnet link"]);
}

#[test]
fn port_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let t = small_torrent(tmp.path());
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let r = bittern([
        "seed",
        t.to_str().unwrap(),
        "-d",
        tmp.path().join("src").to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    assert_one_error_line(&r, 4, &[&format!("cannot listen on {addr}"), "in use"]);
    let r = bittern(["tracker", "--bind", "127.0.0.1", "-p", &port]);
    assert_one_error_line(&r, 4, &[&format!("cannot listen on {addr}"), "in use"]);
    let dst = tmp.path().join("dst");
    let r = bittern([
        "download",
        t.to_str().unwrap(),
        "-d",
        dst.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    assert_one_error_line(&r, 4, &[&format!("cannot listen on {addr}")]);
}

#[test]
fn unwritable_save_directory() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let tmp = tempfile::tempdir().unwrap();
    // world-readable so an unprivileged child can read the torrent
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let t = small_torrent(tmp.path());
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o644)).unwrap();
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut c = cmd([
        "download",
        t.to_str().unwrap(),
        "-d",
        locked.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
    ]);
    // root ignores permission bits: run the child as `nobody` then
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    let r = run_limited(c, std::time::Duration::from_secs(30));
    assert_one_error_line(&r, 5, &["save directory", "locked", "is not writable"]);
    assert_eq!(
        std::fs::read_dir(&locked).unwrap().count(),
        0,
        "something was written"
    );

    // a save directory that cannot even be created (a file is in the way)
    let r = bittern([
        "download",
        t.to_str().unwrap(),
        "-d",
        t.join("sub").to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
    ]);
    assert_one_error_line(&r, 5, &["save directory", "cannot be created"]);
}

#[test]
fn bad_units_and_usage_exit_2() {
    for args in [
        vec!["swarm", "--size", "12 parsecs"],
        vec!["download", "x.torrent", "--download-limit", "fast"],
        vec!["download", "x.torrent", "--seed-time", "soon"],
        vec!["create", ".", "--piece-length", "100KiB"],
        vec!["frobnicate"],
    ] {
        let r = bittern(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"));
    }
    let r = bittern(["--help"]);
    assert_eq!(r.code, Some(0));
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "] {
        assert!(
            r.stdout.contains(&format!("\n  {code}")),
            "exit code {code} undocumented"
        );
    }
}
