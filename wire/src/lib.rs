//! bittern-wire: the BitTorrent data formats.
//!
//! Will hold bencode, `.torrent` metainfo, magnet links, the peer wire
//! handshake and messages, and `Bitfield`.
#![deny(missing_docs)]
