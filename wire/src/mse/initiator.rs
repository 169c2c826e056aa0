//! The dialling side (A) of the MSE handshake.

use rand::CryptoRng;

use super::dh::KeyPair;
use super::{
    pad_len, req1, req2, req3, stream_key, Cipher, Crypto, CryptoSet, Established, MseError,
    KEY_LEN, MAX_PAD, VC,
};
use crate::id::InfoHash;
use crate::rc4::Rc4;

/// What the initiator offers and sends.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// `crypto_provide`: the methods we accept (RC4 only when the peer
    /// must not pick plaintext).
    pub provide: CryptoSet,
    /// IA, sent encrypted inside step 3: normally our 68-byte BitTorrent
    /// handshake, saving a round trip. At most 65535 bytes (longer is
    /// cut off at the caller's risk; keep it to the handshake).
    pub initial_payload: Vec<u8>,
}

/// A-to-B and B-to-A RC4, once Yb is known.
#[derive(Clone)]
struct Keys {
    encrypt: Rc4,
    decrypt: Rc4,
}

#[derive(Clone)]
enum State {
    /// Waiting for Yb (96 bytes).
    Yb,
    /// Scanning PadB for ENCRYPT(VC).
    Vc {
        pattern: [u8; 8],
        keys: Box<Keys>,
    },
    /// Reading `crypto_select` and `len(PadD)`.
    Select {
        keys: Box<Keys>,
    },
    /// Skipping PadD.
    PadD {
        len: usize,
        select: Crypto,
        keys: Box<Keys>,
    },
    Done,
    Failed(MseError),
}

/// The initiator's state machine. Send [`Initiator::output`] after
/// creating it and after every [`Initiator::feed`].
#[derive(Clone)]
pub struct Initiator {
    skey: InfoHash,
    keys: KeyPair,
    config: InitiatorConfig,
    out: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    /// PadC (sent encrypted; empty unless [`Initiator::with_pad_c`]).
    pad_c: Vec<u8>,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("skey", &self.skey)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Start a handshake for `info_hash`; keys and PadA come from the
    /// thread-local CSPRNG (`rand::rng()`, ChaCha seeded from the OS).
    pub fn new(info_hash: InfoHash, config: InitiatorConfig) -> Initiator {
        Initiator::with_rng(info_hash, config, &mut rand::rng())
    }

    /// [`Initiator::new`] with a given cryptographic RNG.
    pub fn with_rng<R: CryptoRng + ?Sized>(
        info_hash: InfoHash,
        mut config: InitiatorConfig,
        rng: &mut R,
    ) -> Initiator {
        config.initial_payload.truncate(usize::from(u16::MAX));
        let keys = KeyPair::generate(rng);
        let mut out = keys.public.to_vec();
        let pad = pad_len(rng);
        out.resize(KEY_LEN + pad, 0);
        rng.fill_bytes(&mut out[KEY_LEN..]);
        Initiator {
            skey: info_hash,
            keys,
            config,
            out,
            buf: Vec::new(),
            state: State::Yb,
            pad_c: Vec::new(),
        }
    }

    /// Send a PadC of `len` bytes of the given filler instead of the
    /// empty one every client sends. The spec allows 0 to 512; more is a
    /// protocol violation, available to test peers' limits.
    #[must_use]
    pub fn with_pad_c(mut self, len: u16, filler: u8) -> Self {
        self.pad_c = vec![filler; usize::from(len)];
        self
    }

    /// Bytes to send now (drained: each byte is returned once).
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Take received bytes. `Ok(None)`: need more. `Ok(Some(_))`: done
    /// (send [`Initiator::output`] once more, there may be nothing).
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
                State::Yb => {
                    if self.buf.len() < KEY_LEN {
                        self.state = State::Yb;
                        return Ok(None);
                    }
                    let mut yb = [0u8; KEY_LEN];
                    yb.copy_from_slice(&self.buf[..KEY_LEN]);
                    self.buf.drain(..KEY_LEN);
                    let (pattern, keys) = self.send_step3(&yb)?;
                    State::Vc { pattern, keys }
                }
                State::Vc { pattern, keys } => {
                    // VC starts after at most MAX_PAD bytes of PadB
                    let found = self
                        .buf
                        .windows(8)
                        .take(MAX_PAD + 1)
                        .position(|w| w == pattern);
                    match found {
                        Some(k) => {
                            self.buf.drain(..k + 8);
                            State::Select { keys }
                        }
                        None if self.buf.len() >= MAX_PAD + 8 => return Err(MseError::VcNotFound),
                        None => {
                            self.state = State::Vc { pattern, keys };
                            return Ok(None);
                        }
                    }
                }
                State::Select { mut keys } => {
                    if self.buf.len() < 6 {
                        self.state = State::Select { keys };
                        return Ok(None);
                    }
                    let mut head = [0u8; 6];
                    head.copy_from_slice(&self.buf[..6]);
                    self.buf.drain(..6);
                    keys.decrypt.apply(&mut head);
                    let selected = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                    let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
                    let select = match selected {
                        0x01 => Crypto::Plaintext,
                        0x02 => Crypto::Rc4,
                        _ => return Err(MseError::BadSelect { selected }),
                    };
                    if !self.config.provide.contains(select) {
                        return Err(MseError::BadSelect { selected });
                    }
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong { len });
                    }
                    State::PadD { len, select, keys }
                }
                State::PadD {
                    len,
                    select,
                    mut keys,
                } => {
                    if self.buf.len() < len {
                        self.state = State::PadD { len, select, keys };
                        return Ok(None);
                    }
                    let mut pad: Vec<u8> = self.buf.drain(..len).collect();
                    keys.decrypt.apply(&mut pad);
                    return Ok(Some(self.finish(select, *keys)));
                }
                State::Done | State::Failed(_) => return Err(MseError::Finished),
            };
        }
    }

    /// Yb is in: queue step 3 and return the encrypted VC to look for.
    fn send_step3(&mut self, yb: &[u8; KEY_LEN]) -> Result<([u8; 8], Box<Keys>), MseError> {
        let s = self.keys.shared_secret(yb)?;
        let mut enc = stream_key(b"keyA", &s, &self.skey);
        let mut dec = stream_key(b"keyB", &s, &self.skey);
        let req2 = req2(&self.skey);
        let req3 = req3(&s);
        self.out.extend_from_slice(&req1(&s));
        self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let ia = &self.config.initial_payload;
        let mut tail = Vec::with_capacity(16 + ia.len());
        tail.extend_from_slice(&VC);
        tail.extend_from_slice(&self.config.provide.bits().to_be_bytes());
        tail.extend_from_slice(&(self.pad_c.len() as u16).to_be_bytes());
        tail.extend_from_slice(&self.pad_c);
        tail.extend_from_slice(&(ia.len() as u16).to_be_bytes());
        tail.extend_from_slice(ia);
        enc.apply(&mut tail);
        self.out.extend_from_slice(&tail);
        let mut pattern = VC;
        dec.apply(&mut pattern);
        Ok((
            pattern,
            Box::new(Keys {
                encrypt: enc,
                decrypt: dec,
            }),
        ))
    }

    fn finish(&mut self, select: Crypto, keys: Keys) -> Established {
        let (encrypt, mut decrypt) = match select {
            Crypto::Rc4 => (Cipher::rc4(keys.encrypt), Cipher::rc4(keys.decrypt)),
            Crypto::Plaintext => (Cipher::plaintext(), Cipher::plaintext()),
        };
        let mut received = std::mem::take(&mut self.buf);
        decrypt.apply(&mut received);
        Established {
            info_hash: self.skey,
            crypto: select,
            encrypt,
            decrypt,
            received,
        }
    }
}
