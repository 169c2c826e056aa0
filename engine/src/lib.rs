//! bittern-engine: the multi-torrent session, peer threads, the piece picker
//! and the choker.
//!
//! Not yet implemented.
