//! The listening side (B) of the MSE handshake, serving many torrents on
//! one port.

use std::collections::HashMap;

use rand::CryptoRng;

use super::dh::KeyPair;
use super::{
    pad_len, req1, req2, req3, stream_key, Cipher, Crypto, CryptoSet, Established, MseError,
    KEY_LEN, MAX_PAD, VC,
};
use crate::id::InfoHash;
use crate::rc4::Rc4;

/// `HASH('req2', info_hash)` for every torrent a listen port serves:
/// the key an incoming MSE handshake names its torrent by. Insert v1
/// hashes and, for v2 torrents, the truncated SHA-256 hash too.
#[derive(Debug, Clone, Default)]
pub struct ObfuscatedHashes(HashMap<[u8; 20], InfoHash>);

impl ObfuscatedHashes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `info_hash`.
    pub fn insert(&mut self, info_hash: InfoHash) {
        self.0.insert(req2(&info_hash), info_hash);
    }

    /// Stop serving `info_hash`. The table gives its room back once at
    /// most a quarter of it is used (a port that served thousands of
    /// torrents and serves few now).
    pub fn remove(&mut self, info_hash: &InfoHash) {
        self.0.remove(&req2(info_hash));
        if self.0.capacity() > 32 && self.0.len() * 4 <= self.0.capacity() {
            self.0.shrink_to(self.0.len() * 2);
        }
    }

    /// The torrent whose `HASH('req2', ·)` is `obfuscated`.
    pub fn find(&self, obfuscated: &[u8; 20]) -> Option<InfoHash> {
        self.0.get(obfuscated).copied()
    }

    /// How many torrents are served.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no torrent is served.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<InfoHash> for ObfuscatedHashes {
    fn from_iter<I: IntoIterator<Item = InfoHash>>(iter: I) -> Self {
        let mut t = ObfuscatedHashes::new();
        for ih in iter {
            t.insert(ih);
        }
        t
    }
}

/// What the responder accepts.
#[derive(Debug, Clone, Copy)]
pub struct ResponderConfig {
    /// Methods we accept (`--encryption require`: RC4 only).
    pub allowed: CryptoSet,
    /// The method to pick when the peer offers both and we allow both.
    pub prefer: Crypto,
}

impl Default for ResponderConfig {
    /// Accept both, prefer RC4 (a peer that offers both is happy with
    /// either; RC4 hides the stream).
    fn default() -> Self {
        ResponderConfig {
            allowed: CryptoSet::BOTH,
            prefer: Crypto::Rc4,
        }
    }
}

/// Both directions' RC4 once the torrent is known.
#[derive(Clone)]
struct Keys {
    skey: InfoHash,
    /// B-to-A.
    encrypt: Rc4,
    /// A-to-B.
    decrypt: Rc4,
}

#[derive(Clone)]
enum State {
    /// Waiting for Ya (96 bytes).
    Ya,
    /// Scanning PadA for `HASH('req1', S)`.
    Req1 {
        s: Box<[u8; KEY_LEN]>,
    },
    /// Reading `HASH('req2', SKEY) xor HASH('req3', S)`.
    Skey {
        s: Box<[u8; KEY_LEN]>,
    },
    /// Reading VC, `crypto_provide`, `len(PadC)`.
    Provide {
        keys: Box<Keys>,
    },
    /// Skipping PadC.
    PadC {
        len: usize,
        select: Crypto,
        keys: Box<Keys>,
    },
    /// Reading `len(IA)`.
    IaLen {
        select: Crypto,
        keys: Box<Keys>,
    },
    /// Reading IA.
    Ia {
        len: usize,
        select: Crypto,
        keys: Box<Keys>,
    },
    Done,
    Failed(MseError),
}

/// The responder's state machine; `F` finds a torrent from
/// `HASH('req2', SKEY)` (e.g. `|h| table.find(h)` over an
/// [`ObfuscatedHashes`]). Send [`Responder::output`] after every
/// [`Responder::feed`], including the one that returns `Some`.
#[derive(Clone)]
pub struct Responder<F> {
    lookup: F,
    config: ResponderConfig,
    keys: KeyPair,
    /// Yb and PadB, sent once Ya has arrived.
    hello: Vec<u8>,
    out: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    /// PadD (sent encrypted; empty unless [`Responder::with_pad_d`]).
    pad_d: Vec<u8>,
}

impl<F> std::fmt::Debug for Responder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&[u8; 20]) -> Option<InfoHash>> Responder<F> {
    /// A responder using the thread-local CSPRNG (`rand::rng()`, ChaCha
    /// seeded from the OS).
    pub fn new(lookup: F, config: ResponderConfig) -> Self {
        Responder::with_rng(lookup, config, &mut rand::rng())
    }

    /// [`Responder::new`] with a given cryptographic RNG.
    pub fn with_rng<R: CryptoRng + ?Sized>(
        lookup: F,
        config: ResponderConfig,
        rng: &mut R,
    ) -> Self {
        let keys = KeyPair::generate(rng);
        let mut hello = keys.public.to_vec();
        hello.resize(KEY_LEN + pad_len(rng), 0);
        rng.fill_bytes(&mut hello[KEY_LEN..]);
        Responder {
            lookup,
            config,
            keys,
            hello,
            out: Vec::new(),
            buf: Vec::new(),
            state: State::Ya,
            pad_d: Vec::new(),
        }
    }

    /// Send a PadD of `len` bytes of the given filler instead of the
    /// empty one every client sends. The spec allows 0 to 512; more is a
    /// protocol violation, available to test peers' limits.
    #[must_use]
    pub fn with_pad_d(mut self, len: u16, filler: u8) -> Self {
        self.pad_d = vec![filler; usize::from(len)];
        self
    }

    /// Bytes to send now (drained: each byte is returned once).
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Take received bytes (starting with the very first byte of the
    /// connection). `Ok(None)`: need more. `Ok(Some(_))`: done.
    ///
    /// Memory stays bounded: at most 96 + 512 + 20 bytes are kept while
    /// looking for the sync hash, and PadC and IA are length-checked
    /// (IA is at most 65535 bytes by its u16 length).
    ///
    /// # Errors
    /// Any [`MseError`]; the connection must then be closed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Established>, MseError> {
        match &self.state {
            State::Done => return Err(MseError::Finished),
            State::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        self.buf.extend_from_slice(data);
        match self.advance() {
            Ok(done) => Ok(done),
            Err(e) => {
                self.buf = Vec::new();
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn advance(&mut self) -> Result<Option<Established>, MseError> {
        loop {
            // each arm puts back the state it stays in
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::Ya => {
                    if self.buf.len() < KEY_LEN {
                        self.state = State::Ya;
                        return Ok(None);
                    }
                    let mut ya = [0u8; KEY_LEN];
                    ya.copy_from_slice(&self.buf[..KEY_LEN]);
                    self.buf.drain(..KEY_LEN);
                    let s = Box::new(self.keys.shared_secret(&ya)?);
                    self.out.append(&mut self.hello);
                    State::Req1 { s }
                }
                State::Req1 { s } => {
                    // req1 starts after at most MAX_PAD bytes of PadA
                    let sync = req1(&s);
                    let found = self
                        .buf
                        .windows(20)
                        .take(MAX_PAD + 1)
                        .position(|w| w == sync);
                    match found {
                        Some(k) => {
                            self.buf.drain(..k + 20);
                            State::Skey { s }
                        }
                        None if self.buf.len() >= MAX_PAD + 20 => {
                            return Err(MseError::SyncNotFound)
                        }
                        None => {
                            self.state = State::Req1 { s };
                            return Ok(None);
                        }
                    }
                }
                State::Skey { s } => {
                    if self.buf.len() < 20 {
                        self.state = State::Skey { s };
                        return Ok(None);
                    }
                    let mut obfuscated = [0u8; 20];
                    for ((o, a), b) in obfuscated.iter_mut().zip(&self.buf[..20]).zip(req3(&s)) {
                        *o = a ^ b;
                    }
                    self.buf.drain(..20);
                    let skey = (self.lookup)(&obfuscated).ok_or(MseError::UnknownTorrent)?;
                    State::Provide {
                        keys: Box::new(Keys {
                            skey,
                            encrypt: stream_key(b"keyB", &s, &skey),
                            decrypt: stream_key(b"keyA", &s, &skey),
                        }),
                    }
                }
                State::Provide { mut keys } => {
                    if self.buf.len() < 14 {
                        self.state = State::Provide { keys };
                        return Ok(None);
                    }
                    let mut head = [0u8; 14];
                    head.copy_from_slice(&self.buf[..14]);
                    self.buf.drain(..14);
                    keys.decrypt.apply(&mut head);
                    if head[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    let provided = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                    let len = usize::from(u16::from_be_bytes([head[12], head[13]]));
                    let select = self.select(provided)?;
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong { len });
                    }
                    State::PadC { len, select, keys }
                }
                State::PadC {
                    len,
                    select,
                    mut keys,
                } => {
                    if self.buf.len() < len {
                        self.state = State::PadC { len, select, keys };
                        return Ok(None);
                    }
                    let mut pad: Vec<u8> = self.buf.drain(..len).collect();
                    keys.decrypt.apply(&mut pad);
                    State::IaLen { select, keys }
                }
                State::IaLen { select, mut keys } => {
                    if self.buf.len() < 2 {
                        self.state = State::IaLen { select, keys };
                        return Ok(None);
                    }
                    let mut len = [self.buf[0], self.buf[1]];
                    self.buf.drain(..2);
                    keys.decrypt.apply(&mut len);
                    let len = usize::from(u16::from_be_bytes(len));
                    State::Ia { len, select, keys }
                }
                State::Ia { len, select, keys } => {
                    if self.buf.len() < len {
                        self.state = State::Ia { len, select, keys };
                        return Ok(None);
                    }
                    return Ok(Some(self.finish(len, select, *keys)));
                }
                State::Done | State::Failed(_) => return Err(MseError::Finished),
            };
        }
    }

    /// `crypto_select` for the peer's `crypto_provide`.
    fn select(&self, provided: u32) -> Result<Crypto, MseError> {
        let offered = CryptoSet::from_bits(provided);
        let ok = |c: Crypto| offered.contains(c) && self.config.allowed.contains(c);
        let other = match self.config.prefer {
            Crypto::Rc4 => Crypto::Plaintext,
            Crypto::Plaintext => Crypto::Rc4,
        };
        if ok(self.config.prefer) {
            Ok(self.config.prefer)
        } else if ok(other) {
            Ok(other)
        } else {
            Err(MseError::NoCommonCrypto { provided })
        }
    }

    /// IA (the first `ia_len` buffered bytes) is in: queue step 4.
    fn finish(&mut self, ia_len: usize, select: Crypto, mut keys: Keys) -> Established {
        let mut reply = Vec::with_capacity(14 + self.pad_d.len());
        reply.extend_from_slice(&VC);
        reply.extend_from_slice(&select.bit().to_be_bytes());
        reply.extend_from_slice(&(self.pad_d.len() as u16).to_be_bytes());
        reply.extend_from_slice(&self.pad_d);
        keys.encrypt.apply(&mut reply);
        self.out.extend_from_slice(&reply);
        let mut received = std::mem::take(&mut self.buf);
        // IA is always RC4; what follows it is ENCRYPT2
        keys.decrypt.apply(&mut received[..ia_len]);
        let (encrypt, mut decrypt) = match select {
            Crypto::Rc4 => (Cipher::rc4(keys.encrypt), Cipher::rc4(keys.decrypt)),
            Crypto::Plaintext => (Cipher::plaintext(), Cipher::plaintext()),
        };
        decrypt.apply(&mut received[ia_len..]);
        Established {
            info_hash: keys.skey,
            crypto: select,
            encrypt,
            decrypt,
            received,
        }
    }
}
