//! Write tokens for `announce_peer` (BEP 5).
//!
//! A token is the first 8 bytes of SHA-1(secret || requester IP). The secret
//! rotates every [`ROTATE_EVERY`]; a token made with the previous secret is
//! still accepted, so a token lives 5 to 10 minutes. Binding it to the IP
//! (not the port) means a requester cannot announce for another address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use sha1::{Digest, Sha1};

/// How often the secret changes.
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Bytes in a token we hand out.
pub const TOKEN_LEN: usize = 8;

/// The current and previous secret.
#[derive(Debug)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Instant,
}

fn token_for(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let d = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&d[..TOKEN_LEN]);
    out
}

impl Tokens {
    /// Fresh secrets.
    pub fn new(now: Instant, rng: &mut impl Rng) -> Tokens {
        let mut current = [0u8; 16];
        let mut previous = [0u8; 16];
        rng.fill(&mut current[..]);
        rng.fill(&mut previous[..]);
        Tokens {
            current,
            previous,
            rotated_at: now,
        }
    }

    /// Rotates the secret if 5 minutes (`ROTATE_EVERY`) have passed.
    pub fn maybe_rotate(&mut self, now: Instant, rng: &mut impl Rng) {
        if now.saturating_duration_since(self.rotated_at) >= ROTATE_EVERY {
            self.previous = self.current;
            rng.fill(&mut self.current[..]);
            self.rotated_at = now;
        }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Instant {
        self.rotated_at + ROTATE_EVERY
    }

    /// The token for a requester at `ip`.
    pub fn make(&self, ip: IpAddr) -> Vec<u8> {
        token_for(&self.current, ip).to_vec()
    }

    /// Whether `token` was made for `ip` with the current or previous secret.
    pub fn verify(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == token_for(&self.current, ip) || token == token_for(&self.previous, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn tokens_bind_ip_and_survive_one_rotation() {
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let mut t = Tokens::new(t0, &mut rng);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let tok = t.make(a);
        assert!(t.verify(a, &tok));
        assert!(!t.verify(b, &tok), "a token is bound to the requester's ip");
        assert!(!t.verify(a, b"garbage"));
        t.maybe_rotate(t0 + Duration::from_secs(60), &mut rng);
        assert_eq!(t.make(a), tok, "no rotation before 5 minutes");
        t.maybe_rotate(t0 + ROTATE_EVERY, &mut rng);
        assert_ne!(t.make(a), tok);
        assert!(t.verify(a, &tok), "the previous secret is still accepted");
        t.maybe_rotate(t0 + ROTATE_EVERY * 2, &mut rng);
        assert!(!t.verify(a, &tok), "two rotations later the token is dead");
    }
}
