//! bittern-wire: the BitTorrent data formats, with no IO.
//!
//! - [`bencode`]: [`Value`](bencode::Value), a limit-checked reader and a
//!   canonical writer.
//! - [`Metainfo`]: `.torrent` files (BEP 3, 12, 19, 27, 47), parsed with
//!   the info hash taken over the exact `info` bytes; [`MetainfoBuilder`]
//!   writes new ones.
//! - [`Magnet`]: BEP 9 magnet links.
//! - [`Handshake`], [`Message`], [`decode_message`], [`ExtensionHandshake`]:
//!   the peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10), as a
//!   sans-IO codec: feed bytes, get whole borrowed messages.
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
mod extension;
mod handshake;
mod id;
mod magnet;
mod message;
pub mod metainfo;
pub mod mse;
pub mod rc4;

pub use bitfield::{Bitfield, BitfieldError};
pub use extension::{ExtensionError, ExtensionHandshake};
pub use handshake::{Handshake, HandshakeError};
pub use id::{IdError, InfoHash, PeerId};
pub use magnet::{Magnet, MagnetError};
pub use message::{
    decode_message, piece_header, BlockRef, Message, MessageError, DEFAULT_MAX_FRAME,
};
pub use metainfo::{FileEntry, Info, Metainfo, MetainfoBuilder, MetainfoError};
