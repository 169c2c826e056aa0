//! Vectored block writes across file boundaries.

use std::sync::Arc;

use bittern_storage::{Backend, FilePool, Storage};

use crate::util::*;

#[test]
fn write_blocks_across_files_matches_single_writes() {
    for backend in [Backend::Mmap, Backend::PositionedIo] {
        let dir = tempfile::tempdir().unwrap();
        // Files end inside pieces and inside blocks.
        let lengths = [10_000u64, 1, 70_000, 0, 50_000, 131_072];
        let total: u64 = lengths.iter().sum();
        let data = random_bytes(total as usize, 21);
        let pl = 64 * 1024;
        let layout = layout(&lengths, pl, &data);
        let s = Storage::new(
            layout,
            dir.path().to_path_buf(),
            Arc::new(FilePool::new(2)),
            backend,
        )
        .unwrap();
        for p in 0..s.layout().piece_count() {
            let start = p * pl as usize;
            let end = (start + pl as usize).min(data.len());
            let piece = &data[start..end];
            // Uneven parts, like blocks with the last one short.
            let parts: Vec<&[u8]> = piece.chunks(16 * 1024).collect();
            s.write_blocks(p, 0, &parts).unwrap();
        }
        for p in 0..s.layout().piece_count() {
            assert!(s.check_piece(p).unwrap(), "{backend:?} piece {p}");
        }
        // A run starting mid-piece.
        let mut buf = vec![0u8; 20_000];
        s.write_blocks(
            1,
            5_000,
            &[
                &data[pl as usize + 5_000..pl as usize + 15_000],
                &data[pl as usize + 15_000..pl as usize + 25_000],
            ],
        )
        .unwrap();
        s.read_block(1, 5_000, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[pl as usize + 5_000..pl as usize + 25_000]);
    }
}
