//! `Storage::block_source` + `send_vectored` put exactly the stored bytes
//! on a real loopback TCP connection, and a file that shrinks mid-send is
//! an error, not a crash.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use bittern_storage::{
    hash_blocks, send_vectored, Backend, Chunk, FilePool, FileSpec, Layout, SendError, Storage,
};

use crate::util::*;

/// A connected loopback pair: (sender, receiver).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (rx, _) = l.accept().unwrap();
    (tx, rx)
}

/// Reads everything `rx` receives until the sender closes.
fn drain(mut rx: TcpStream) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        got
    })
}

/// Small files ending inside blocks (sent through reads), an empty file, a
/// padding file (BEP 47) and files of over 1 MiB (sent from maps; the
/// threshold is 256 KiB).
const FILES: [(u64, bool); 7] = [
    (10_000, false),
    (1, false),
    (6_383, true),
    (1_300_000, false),
    (0, false),
    (90_000, false),
    (1_100_000, false),
];

fn padded_layout(data: &[u8], pl: u64) -> Layout {
    let specs = FILES
        .iter()
        .enumerate()
        .map(|(i, &(length, padding))| FileSpec {
            path: PathBuf::from(format!("d/f{i}")),
            length,
            padding,
        })
        .collect();
    let hashes = data.chunks(pl as usize).map(|c| hash_blocks([c])).collect();
    Layout::new(specs, pl, hashes).unwrap()
}

fn padded_data() -> Vec<u8> {
    let total: u64 = FILES.iter().map(|f| f.0).sum();
    let mut data = random_bytes(total as usize, 77);
    let mut at = 0usize;
    for &(len, pad) in &FILES {
        if pad {
            data[at..at + len as usize].fill(0);
        }
        at += len as usize;
    }
    data
}

#[test]
fn blocks_and_headers_arrive_byte_exact_across_files_and_padding() {
    for backend in [Backend::PositionedIo, Backend::Mmap] {
        let dir = tempfile::tempdir().unwrap();
        let pl = 32 * 1024;
        let data = padded_data();
        let s = Storage::new(
            padded_layout(&data, pl),
            dir.path().into(),
            Arc::new(FilePool::new(2)),
            backend,
        )
        .unwrap();
        for p in 0..s.layout().piece_count() {
            let start = p * pl as usize;
            let end = (start + pl as usize).min(data.len());
            s.write_block(p, 0, &data[start..end]).unwrap();
        }
        assert!(
            !dir.path().join("d/f2").exists(),
            "padding is never written"
        );

        // Every block, five at a time, each behind a 4-byte "header".
        let mut blocks = Vec::new();
        for p in 0..s.layout().piece_count() {
            let plen = s.layout().piece_len(p);
            for off in (0..plen).step_by(16 * 1024) {
                blocks.push((p, off, (plen - off).min(16 * 1024)));
            }
        }
        let (mut tx, rx) = tcp_pair();
        let reader = drain(rx);
        let mut expect = Vec::new();
        for batch in blocks.chunks(5) {
            // One size check per file for the batch.
            let srcs: Vec<_> = s
                .block_sources(batch)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            let headers: Vec<[u8; 4]> = batch
                .iter()
                .map(|&(p, off, _)| [p as u8, (off >> 8) as u8, 0xAA, 0x55])
                .collect();
            let mut chunks = Vec::new();
            for (k, &(p, off, len)) in batch.iter().enumerate() {
                assert_eq!(srcs[k].len(), len);
                chunks.push(Chunk::Bytes(&headers[k]));
                chunks.push(Chunk::Block(&srcs[k]));
                let at = p * pl as usize + off as usize;
                expect.extend_from_slice(&headers[k]);
                expect.extend_from_slice(&data[at..at + len as usize]);
            }
            send_vectored(&mut tx, &chunks).unwrap();
        }
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expect.len(), "{backend:?}");
        assert!(got == expect, "{backend:?}: received bytes differ");
    }
}

#[test]
fn missing_or_truncated_files_are_missing_data() {
    // f0 is mapped (over 1 MiB), f1 is read through pread.
    for (file, name) in [(0, "dir0/file0"), (1, "dir1/file1")] {
        let dir = tempfile::tempdir().unwrap();
        let lengths = [1_200_000u64, 200_000];
        let data = random_bytes(1_400_000, 5);
        let pl = 64 * 1024;
        let s = Storage::new(
            layout(&lengths, pl, &data),
            dir.path().into(),
            Arc::new(FilePool::new(4)),
            Backend::PositionedIo,
        )
        .unwrap();
        for p in 0..s.layout().piece_count() {
            let start = p * pl as usize;
            let end = (start + pl as usize).min(data.len());
            s.write_block(p, 0, &data[start..end]).unwrap();
        }
        let path = dir.path().join(name);
        let base = if file == 0 { 0 } else { 1_200_000u64 };
        // A block 16 KiB into the file, 48 KiB long.
        let piece = ((base + 16 * 1024) / pl) as usize;
        let off = (base + 16 * 1024) % pl;
        let len = (48 * 1024).min(pl - off);

        // Truncated after the check: the send stops with a Source error
        // (for the mapped file: writev's EFAULT, not SIGBUS). One send
        // first, so the map exists before the file shrinks.
        let src = s.block_source(piece, off, len).unwrap();
        let (mut tx, rx) = tcp_pair();
        let reader = drain(rx);
        send_vectored(&mut tx, &[Chunk::Block(&src)]).unwrap();
        drop(tx);
        let at = (base + 16 * 1024) as usize;
        assert_eq!(reader.join().unwrap(), &data[at..at + len as usize]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(20_000)
            .unwrap();
        let (mut tx, rx) = tcp_pair();
        let reader = drain(rx);
        match send_vectored(&mut tx, &[Chunk::Bytes(b"hdr"), Chunk::Block(&src)]) {
            Err(SendError::Source(e)) => assert!(e.is_missing_data(), "{name}: {e}"),
            other => panic!("{name}: expected a source error, got {other:?}"),
        }
        drop(tx);
        let got = reader.join().unwrap();
        // Whatever went out are the true bytes, never more than the file has.
        assert!(
            got.len() <= 3 + (20_000 - 16 * 1024),
            "{name}: {}",
            got.len()
        );
        if !got.is_empty() {
            assert_eq!(&got[..3], b"hdr");
            assert_eq!(&got[3..], &data[at..at + got.len() - 3], "{name}");
        }

        // Now short: refused before anything is sent.
        let e = s.block_source(piece, off, len).unwrap_err();
        assert!(e.is_missing_data(), "{name}: {e}");
        // In a batch, with one size check for the file: a block the cut
        // file still holds is served, the one past the cut refused, and a
        // block of the other file is unaffected.
        let other = if file == 0 { 1_250_000u64 } else { 100_000 };
        let r = s.block_sources(&[
            ((base / pl) as usize, base % pl, 16 * 1024),
            (piece, off, len),
            ((other / pl) as usize, other % pl, 1024),
        ]);
        assert_eq!(r[0].as_ref().map(|b| b.len()).unwrap(), 16 * 1024);
        assert!(r[1].as_ref().unwrap_err().is_missing_data(), "{name}");
        assert_eq!(r[2].as_ref().map(|b| b.len()).unwrap(), 1024);
        // A deleted file likewise (its open handle is not served).
        std::fs::remove_file(&path).unwrap();
        let e = s.block_source(piece, off, 1024).unwrap_err();
        assert!(e.is_missing_data(), "{name}: {e}");
    }
}
