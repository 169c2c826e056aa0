//! Flushing many pieces at once, and what it reports when data is gone.

use std::sync::Arc;

use bittern_storage::{Backend, FilePool, Storage};

use crate::util::*;

#[test]
fn flush_pieces_syncs_and_reports_pieces_of_deleted_files() {
    for backend in [Backend::Mmap, Backend::PositionedIo] {
        let dir = tempfile::tempdir().unwrap();
        let lengths = [100_000u64, 50_000, 70_000];
        let data = random_bytes(220_000, 9);
        let layout = layout(&lengths, 32 * 1024, &data);
        let pieces = layout.piece_count();
        let s = Storage::new(
            layout,
            dir.path().to_path_buf(),
            Arc::new(FilePool::new(4)),
            backend,
        )
        .unwrap();
        for p in 0..pieces {
            let start = p * 32 * 1024;
            let end = (start + 32 * 1024).min(data.len());
            s.write_block(p, 0, &data[start..end]).unwrap();
            s.start_writeback(p);
        }
        let all: Vec<usize> = (0..pieces).collect();
        assert_eq!(s.flush_pieces(&all).unwrap(), Vec::<usize>::new());
        // The middle file (bytes 100_000..150_000) vanishes while open.
        std::fs::remove_file(s.file_path(1).unwrap()).unwrap();
        let missing = s.flush_pieces(&all).unwrap();
        // Pieces 3 and 4 hold bytes of file 1 (98_304..131_072, 131_072..163_840).
        assert_eq!(missing, vec![3, 4], "{backend:?}");
    }
}
