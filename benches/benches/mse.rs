//! criterion benches for MSE/PE in bittern-wire: RC4 throughput (ours
//! against a naive textbook loop) and the cost of a Diffie–Hellman key
//! pair and of a whole in-memory handshake.
//!
//! The machine is shared, so time is the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the figures are per core
//! and stay put when other processes load the machine. Throughputs print
//! in decimal MB/s, the unit the issue and the reference notes use.
//!
//! `cargo bench -p bittern-benches --bench mse`

use std::hint::black_box;
use std::time::Duration;

use bittern_wire::mse::{
    Crypto, CryptoSet, Initiator, InitiatorConfig, ObfuscatedHashes, Responder, ResponderConfig,
};
use bittern_wire::rc4::Rc4;
use bittern_wire::InfoHash;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// CPU time of the calling thread.
struct ThreadCpu;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU; throughput in decimal MB/s (or elements/s).
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns cpu")
        } else if typical < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (per_iter, unit) = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => (b as f64 / 1e6, "MB/s/core"),
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => {
                (e as f64, "elem/s/core")
            }
            Throughput::Bits(b) => (b as f64 / 1e6, "Mbit/s/core"),
        };
        values.iter_mut().for_each(|v| *v = per_iter * 1e9 / *v);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// One block, as a peer thread would encrypt it.
const CHUNK: usize = 16 * 1024;

/// The textbook RC4 loop: byte state, `usize` indices reduced `% 256`.
struct Naive {
    s: [u8; 256],
    i: usize,
    j: usize,
}

impl Naive {
    fn new(key: &[u8]) -> Naive {
        let mut s = [0u8; 256];
        for (n, v) in s.iter_mut().enumerate() {
            *v = n as u8;
        }
        let mut j = 0usize;
        for i in 0..256 {
            j = (j + s[i] as usize + key[i % key.len()] as usize) % 256;
            s.swap(i, j);
        }
        Naive { s, i: 0, j: 0 }
    }

    fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = (self.i + 1) % 256;
            self.j = (self.j + self.s[self.i] as usize) % 256;
            self.s.swap(self.i, self.j);
            *b ^= self.s[(self.s[self.i] as usize + self.s[self.j] as usize) % 256];
        }
    }
}

fn rc4(c: &mut Criterion<ThreadCpu>) {
    let key = [0x5au8; 20];
    let mut buf: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
    let mut g = c.benchmark_group("rc4");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    let mut ours = Rc4::new_discard(&key, 1024);
    g.bench_function("bittern_16k", |b| {
        b.iter(|| ours.apply(black_box(&mut buf)))
    });
    let mut naive = Naive::new(&key);
    g.bench_function("naive_16k", |b| b.iter(|| naive.apply(black_box(&mut buf))));
    g.finish();
}

fn handshake(c: &mut Criterion<ThreadCpu>) {
    let ih = InfoHash([3; 20]);
    let table: ObfuscatedHashes = [ih].into_iter().collect();
    let config = || InitiatorConfig {
        provide: CryptoSet::RC4,
        initial_payload: vec![0; 68],
    };
    let mut g = c.benchmark_group("mse");
    // one 768-bit modexp with a 160-bit exponent, plus PadA
    g.bench_function("initiator_keypair", |b| {
        b.iter(|| black_box(Initiator::new(ih, config())))
    });
    // two key pairs and two shared secrets, hashing and RC4 setup
    g.bench_function("full_handshake_in_memory", |b| {
        b.iter(|| {
            let mut a = Initiator::new(ih, config());
            let mut r = Responder::new(|h| table.find(h), ResponderConfig::default());
            r.feed(&a.output()).unwrap();
            a.feed(&r.output()).unwrap();
            let est = r.feed(&a.output()).unwrap().unwrap();
            let done = a.feed(&r.output()).unwrap().unwrap();
            assert_eq!((est.crypto, done.crypto), (Crypto::Rc4, Crypto::Rc4));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = rc4, handshake
}
criterion_main!(benches);
