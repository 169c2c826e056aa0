//! bittern-wire: the BitTorrent data formats, with no IO.
//!
//! - [`bencode`]: [`Value`](bencode::Value), a limit-checked reader and a
//!   canonical writer.
//! - [`Metainfo`]: `.torrent` files (BEP 3, 12, 19, 27, 47), parsed with
//!   the info hash taken over the exact `info` bytes; v2 and hybrid
//!   torrents (BEP 52, [`InfoHashV2`]); [`MetainfoBuilder`] writes new ones.
//! - [`Magnet`]: BEP 9 magnet links (v1 `btih`, v2 `btmh`, `x.pe` peers).
//! - [`Handshake`], [`Message`], [`decode_message`], [`ExtensionHandshake`]:
//!   the peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10), as a
//!   sans-IO codec: feed bytes, get whole borrowed messages; the BEP 52
//!   hash messages' payloads are in [`hashes`].
//! - Extension messages, carried in `Message::Extended` under the ids of
//!   [`Extension`]: [`MetadataMessage`] and [`MetadataAssembler`] (BEP 9
//!   `ut_metadata`: fetch an info dictionary from several peers, hash
//!   checked), [`PexMessage`] and [`PexDiff`] (BEP 11 `ut_pex`).
//! - [`encode_compact`], [`iter_compact`]: 6- and 18-byte compact peers.
//! - [`Bitfield`]: which pieces a peer has.
//!
//! # Example
//!
//! ```
//! use bittern_wire::{decode_message, Bitfield, BlockRef, Message, DEFAULT_MAX_FRAME};
//!
//! let mut out = Vec::new();
//! Message::Request(BlockRef { index: 1, begin: 16384, length: 16384 }).encode(&mut out);
//! Message::Have(7).encode(&mut out);
//!
//! // the first frame decodes, leaving the second
//! let (msg, used) = decode_message(&out, DEFAULT_MAX_FRAME).unwrap().unwrap();
//! assert_eq!(msg, Message::Request(BlockRef { index: 1, begin: 16384, length: 16384 }));
//! let (msg, _) = decode_message(&out[used..], DEFAULT_MAX_FRAME).unwrap().unwrap();
//! assert_eq!(msg, Message::Have(7));
//! // a partial frame asks for more bytes
//! assert_eq!(decode_message(&out[..3], DEFAULT_MAX_FRAME).unwrap(), None);
//!
//! let mut have = Bitfield::new(10);
//! have.set(7);
//! assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![7]);
//! ```
#![deny(missing_docs)]

pub mod bencode;
mod bitfield;
mod compact;
mod extension;
mod handshake;
pub mod hashes;
mod id;
pub mod lsd;
mod magnet;
mod message;
mod metadata;
pub mod metainfo;
pub mod mse;
mod pex;
pub mod rc4;

pub use bitfield::{Bitfield, BitfieldError};
pub use compact::{
    compact_len, compact_remainder, decode_compact_v4, decode_compact_v6, encode_compact,
    iter_compact, COMPACT_V4_LEN, COMPACT_V6_LEN,
};
pub use extension::{Extension, ExtensionError, ExtensionHandshake};
pub use handshake::{Handshake, HandshakeError};
pub use id::{IdError, InfoHash, PeerId};
pub use lsd::{LsdAnnounce, LsdError};
pub use magnet::{Magnet, MagnetError, MagnetPeer};
pub use message::{
    decode_message, piece_header, BlockRef, Message, MessageError, DEFAULT_MAX_FRAME,
};
pub use metadata::{
    metadata_piece, metadata_piece_count, Accepted, MetadataAssembler, MetadataError, MetadataHash,
    MetadataMessage, MAX_METADATA_SIZE, METADATA_PIECE_LEN,
};
pub use metainfo::{
    FileEntry, Info, InfoHashV2, MetaVersion, Metainfo, MetainfoBuilder, MetainfoError,
};
pub use pex::{
    PexDiff, PexError, PexFlags, PexMessage, PEX_INTERVAL, PEX_MAX_ADDED, PEX_MAX_DECODED,
};
