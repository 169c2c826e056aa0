//! BEP 47 padding in torrents with SHA-1 pieces (hybrid v1 + v2 torrents,
//! and v1 torrents made with padding files): the padding is zeros by
//! definition, so a piece that ends in it is downloaded as its files'
//! bytes only, and the zeros are supplied when its SHA-1 is checked (the
//! storage reads padding as zeros; the inline hash appends them). A v2-only
//! torrent's padding is found by `v2::short_pieces`.

use bittern_storage::Layout;

/// The pieces of a layout with SHA-1 pieces that end in padding, with the
/// bytes before that padding: `(piece, length)`, in piece order, for
/// `PiecePicker::set_short_pieces`. A piece that is padding from its start
/// (a padding file longer than a piece) is left whole: it is fetched as
/// any other piece. Empty for a v2-only layout.
pub(crate) fn padding_tails(layout: &Layout) -> Vec<(u32, u64)> {
    if !layout.has_v1() {
        return Vec::new();
    }
    let plen = layout.piece_length();
    let total = layout.total_length();
    let files = layout.files();
    let mut out = Vec::new();
    let mut i = 0;
    while i < files.len() {
        if !files[i].padding || files[i].length == 0 {
            i += 1;
            continue;
        }
        // a run of padding (empty files in it change nothing)
        let start = layout.file_start(i);
        let mut end = start + files[i].length;
        i += 1;
        while i < files.len() && (files[i].padding || files[i].length == 0) {
            end += files[i].length;
            i += 1;
        }
        if plen == 0 {
            continue;
        }
        // the piece the run starts in: short when the run starts inside
        // it and reaches its end (pieces wholly inside the run are left
        // whole, and the run's end inside a piece is not a tail)
        let piece = start / plen;
        let piece_start = piece * plen;
        let piece_end = (piece_start + plen).min(total);
        if start > piece_start && end >= piece_end {
            if let Ok(p) = u32::try_from(piece) {
                out.push((p, start - piece_start));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_storage::FileSpec;

    fn layout(files: &[(u64, bool)], plen: u64) -> Layout {
        let specs = files
            .iter()
            .enumerate()
            .map(|(i, &(length, padding))| FileSpec {
                path: format!("f{i}").into(),
                length,
                padding,
            })
            .collect();
        let total: u64 = files.iter().map(|f| f.0).sum();
        let count = total.div_ceil(plen) as usize;
        Layout::new(specs, plen, vec![[0; 20]; count]).unwrap()
    }

    #[test]
    fn pieces_ending_in_padding_are_their_files_bytes_long() {
        // a: 100 + pad 156 (piece 0), b: 300 + pad 212 (pieces 1-2),
        // c: 256 exactly (piece 3), d: 10 at the end, no padding (piece 4)
        let l = layout(
            &[
                (100, false),
                (156, true),
                (300, false),
                (212, true),
                (256, false),
                (10, false),
            ],
            256,
        );
        assert_eq!(padding_tails(&l), vec![(0, 100), (2, 44)]);
    }

    #[test]
    fn runs_of_padding_and_whole_padding_pieces() {
        // piece 0: 50 bytes, then two padding files and an empty file in
        // one run; piece 1: 10 bytes, then padding through the whole of
        // piece 2 (piece 1 short, piece 2 left whole); piece 3: padding in
        // its middle (not its tail: left whole)
        let l = layout(
            &[
                (50, false),
                (100, true),
                (0, false),
                (106, true),
                (10, false),
                (502, true),
                (20, false),
                (10, true),
                (18, false),
            ],
            256,
        );
        assert_eq!(padding_tails(&l), vec![(0, 50), (1, 10)]);
    }

    #[test]
    fn v2_only_layouts_are_left_to_v2() {
        let spec = |path: &str, length, padding| FileSpec {
            path: path.into(),
            length,
            padding,
        };
        let specs = vec![
            spec("a", 100, false),
            spec("p", 16_284, true),
            spec("b", 50, false),
        ];
        let l = Layout::new_v2(specs, 16_384, &[vec![[1; 32]], vec![], vec![[2; 32]]]).unwrap();
        assert!(!l.has_v1());
        assert!(padding_tails(&l).is_empty());
    }
}
