//! Two pure `Connection`s over a simulated link with loss, duplication,
//! reordering (jitter) and an optional bottleneck queue. Virtual time, seeded
//! PRNG: every run is the same, and the bytes that arrive are checked.

use bittern_utp::{Config, Connection, Packet, PacketType};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Clone, Copy)]
struct LinkSpec {
    loss: f64,
    dup: f64,
    delay_us: u64,
    jitter_us: u64,
    /// Bottleneck rate in bytes per second (0 = unlimited).
    rate: u64,
}

struct Sim {
    spec: LinkSpec,
    rng: Rng,
    /// (deliver_at, to_b, bytes)
    wire: Vec<(u64, bool, Vec<u8>)>,
    /// When the bottleneck queue (one per direction) is free again.
    busy_until: [u64; 2],
    max_queue_us: u64,
    packets: u64,
}

impl Sim {
    fn send(&mut self, now: u64, to_b: bool, bytes: &[u8]) {
        self.packets += 1;
        if self.rng.chance(self.spec.loss) {
            return;
        }
        let copies = if self.rng.chance(self.spec.dup) { 2 } else { 1 };
        let mut at = now;
        if let Some(serialize) = (bytes.len() as u64 * 1_000_000).checked_div(self.spec.rate) {
            let dir = usize::from(to_b);
            let start = self.busy_until[dir].max(now);
            self.max_queue_us = self.max_queue_us.max(start - now);
            self.busy_until[dir] = start + serialize;
            at = self.busy_until[dir];
        }
        for _ in 0..copies {
            let t = at + self.spec.delay_us + self.rng.below(self.spec.jitter_us);
            self.wire.push((t, to_b, bytes.to_vec()));
        }
    }
}

struct Outcome {
    received: Vec<u8>,
    elapsed_us: u64,
    max_queue_us: u64,
    packets: u64,
}

fn run(spec: LinkSpec, data: &[u8], recv_id: u16, isn: u16, limit_us: u64) -> Outcome {
    let cfg = Config::default();
    let mut sim = Sim {
        spec,
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        wire: Vec::new(),
        busy_until: [0; 2],
        max_queue_us: 0,
        packets: 0,
    };
    let mut a = Connection::connect(cfg, recv_id, isn, 0);
    let mut b: Option<Connection> = None;
    let mut written = 0;
    let mut received = Vec::new();
    let mut buf = Vec::new();
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut now = 0u64;
    let step = 250;
    while now < limit_us {
        // deliver
        let mut due: Vec<(u64, bool, Vec<u8>)> = Vec::new();
        sim.wire.retain(|p| {
            if p.0 <= now {
                due.push(p.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|p| p.0);
        for (_, to_b, bytes) in due {
            let p = Packet::decode(&bytes).expect("sim packets are well formed");
            if to_b {
                match &mut b {
                    Some(b) => {
                        let syn = p.header.ty == PacketType::Syn;
                        let want = b.recv_id().wrapping_sub(u16::from(syn));
                        assert_eq!(p.header.connection_id, want);
                        b.on_packet(&p, now);
                    }
                    None if p.header.ty == PacketType::Syn => {
                        b = Some(Connection::accept(cfg, &p, 40_000, now));
                    }
                    None => {}
                }
            } else {
                assert_eq!(p.header.connection_id, a.recv_id());
                a.on_packet(&p, now);
            }
        }
        // application
        if a.is_connected() && written < data.len() {
            written += a.write(&data[written..]);
            if written == data.len() {
                a.close(now);
            }
        }
        if let Some(b) = &mut b {
            loop {
                let n = b.read(&mut rbuf);
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&rbuf[..n]);
            }
        }
        // timers and output
        a.on_tick(now);
        while a.poll_transmit(now, &mut buf) {
            sim.send(now, true, &buf);
        }
        if a.poll_ack(now, &mut buf) {
            sim.send(now, true, &buf);
        }
        if let Some(b) = &mut b {
            b.on_tick(now);
            if b.at_eof() {
                b.close(now);
            }
            while b.poll_transmit(now, &mut buf) {
                sim.send(now, false, &buf);
            }
            if b.poll_ack(now, &mut buf) {
                sim.send(now, false, &buf);
            }
            assert_eq!(a.failure(), None);
            assert_eq!(b.failure(), None);
            if b.at_eof() && a.is_finished(now) && b.is_finished(now) {
                break;
            }
        }
        now += step;
    }
    Outcome {
        received,
        elapsed_us: now,
        max_queue_us: sim.max_queue_us,
        packets: sim.packets,
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut r = Rng(42);
    (0..len).map(|_| r.next() as u8).collect()
}

#[test]
fn lossy_reordering_link_delivers_every_byte_across_wraps() {
    let spec = LinkSpec {
        loss: 0.05,
        dup: 0.02,
        delay_us: 10_000,
        jitter_us: 8_000,
        rate: 0,
    };
    let sent = data(3 << 20);
    // recv_id 65535: the send id wraps to 0; isn 65000: seq_nr wraps.
    let out = run(spec, &sent, 65535, 65000, 600_000_000);
    assert_eq!(
        out.received.len(),
        sent.len(),
        "after {} us",
        out.elapsed_us
    );
    assert!(out.received == sent, "bytes differ");
    eprintln!(
        "lossy: {} bytes in {:.1} s virtual, {} datagrams",
        sent.len(),
        out.elapsed_us as f64 / 1e6,
        out.packets
    );
}

#[test]
fn clean_link_transfers_quickly() {
    let spec = LinkSpec {
        loss: 0.0,
        dup: 0.0,
        delay_us: 5_000,
        jitter_us: 0,
        rate: 0,
    };
    let sent = data(4 << 20);
    let out = run(spec, &sent, 7, 1, 60_000_000);
    assert!(out.received == sent);
    // 4 MiB at RTT 10 ms with a 1 MiB receive window: well under 2 s.
    assert!(out.elapsed_us < 2_000_000, "took {} us", out.elapsed_us);
}

#[test]
fn ledbat_keeps_the_bottleneck_queue_near_target_and_the_link_busy() {
    // 2 MB/s bottleneck, 20 ms one way: without delay control a 1 MiB window
    // would queue ~500 ms.
    let spec = LinkSpec {
        loss: 0.0,
        dup: 0.0,
        delay_us: 20_000,
        jitter_us: 0,
        rate: 2_000_000,
    };
    let sent = data(8 << 20);
    let out = run(spec, &sent, 100, 5, 120_000_000);
    assert!(out.received == sent);
    let secs = out.elapsed_us as f64 / 1e6;
    let rate = sent.len() as f64 / secs;
    eprintln!(
        "ledbat: {:.2} MB/s, max queue {} ms",
        rate / 1e6,
        out.max_queue_us / 1000
    );
    assert!(rate > 0.7 * 2_000_000.0, "link underused: {rate} B/s");
    // Slow start may overshoot once; afterwards the queue stays near 100 ms.
    assert!(
        out.max_queue_us < 400_000,
        "queue reached {} us",
        out.max_queue_us
    );
}
