//! Per-source-IP token buckets for incoming queries.
//!
//! Limits by IP, not address: one host cannot multiply its budget by using
//! many ports. The budget must stay generous: on loopback every node shares
//! 127.0.0.1 (libtorrent's default of 5 queries/s per IP breaks a
//! single-IP swarm, see shared/reference/dht.md).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How often one kind of drop is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A log line for dropped datagrams that cannot itself be flooded: the
/// first drop is logged, then at most one line (with the count) every 10 s.
#[derive(Debug)]
pub struct DropLog {
    what: &'static str,
    level: log::Level,
    last: Option<Instant>,
    since: u64,
}

impl DropLog {
    /// A log for drops of `what`, at `level`.
    pub fn new(what: &'static str, level: log::Level) -> DropLog {
        DropLog {
            what,
            level,
            last: None,
            since: 0,
        }
    }

    /// Records one drop of a datagram from `from`.
    pub fn note(&mut self, from: SocketAddr, now: Instant) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
        {
            return;
        }
        log::log!(
            self.level,
            "dht: dropped {} {} (latest from {from}; logged at most every {} s)",
            self.since,
            self.what,
            LOG_EVERY.as_secs()
        );
        self.last = Some(now);
        self.since = 0;
    }
}

/// Token buckets keyed by source IP, with a bounded number of sources.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` queries per second per IP with bursts of `burst`, tracking at
    /// most `max_sources` IPs. A `rate` of 0 means no limit.
    pub fn new(rate: u32, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Whether one more query from `ip` at `now` is within its budget
    /// (and takes one token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        let refill = |tokens: f64, at: Instant| -> f64 {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
        };
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_sources {
            // forget sources whose bucket is full again; if every tracked
            // source is busy, start over rather than refuse newcomers
            self.buckets.retain(|_, (t, at)| refill(*t, *at) < burst);
            if self.buckets.len() >= self.max_sources {
                self.buckets.clear();
            }
        }
        let entry = self.buckets.entry(ip).or_insert((burst, now));
        let tokens = refill(entry.0, entry.1);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            true
        } else {
            *entry = (tokens, now);
            false
        }
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_per_ip_and_bounded_sources() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 20, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| r.allow(a, t0)).count();
        assert_eq!(allowed, 20, "the burst");
        assert!(r.allow(b, t0), "another ip has its own budget");
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| r.allow(a, later)).count();
        assert_eq!(allowed, 5, "10/s refill");
        for i in 3..10u8 {
            r.allow(IpAddr::from([127, 0, 0, i]), later);
        }
        assert!(r.sources() <= 3);
        assert!(RateLimiter::new(0, 0, 1).allow(a, t0), "0 = unlimited");
    }
}
