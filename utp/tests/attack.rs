//! Issue 25's uTP attacks over real loopback sockets, with a hand-driven
//! peer (raw UDP, packets built with the codec): a SYN flood from 2,000
//! addresses, packets for random connection ids, a peer whose window stays
//! closed for ever, reordered and duplicated data at a high rate, and acks
//! for data never sent.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use bittern_utp::packet::{encode, Header, PacketType};
use bittern_utp::{MuxConfig, Packet, UtpSocket};

use bittern_testkit::{cpu_time, rss_kib};

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// A uTP peer driven by hand over a raw UDP socket.
struct Raw {
    sock: UdpSocket,
    to: SocketAddr,
    /// Our receive id; we send with `id + 1`.
    id: u16,
    seq: u16,
    /// Last in-order sequence number received from the other side.
    ack: u16,
}

impl Raw {
    /// Sends a SYN and waits for the ST_STATE that accepts it.
    fn connect(to: SocketAddr, id: u16, wnd: u32) -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut raw = Raw {
            sock,
            to,
            id,
            seq: 1,
            ack: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no answer to the SYN");
            raw.send_with_id(PacketType::Syn, id, 1, 0, wnd, None, &[]);
            if let Some(h) = raw.recv().map(|(h, _)| h) {
                if h.ty == PacketType::State && h.ack_nr == 1 {
                    raw.ack = h.seq_nr.wrapping_sub(1);
                    raw.seq = 2;
                    return raw;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_with_id(
        &self,
        ty: PacketType,
        id: u16,
        seq: u16,
        ack: u16,
        wnd: u32,
        sack: Option<&[u8]>,
        payload: &[u8],
    ) {
        let h = Header {
            ty,
            connection_id: id,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: wnd,
            seq_nr: seq,
            ack_nr: ack,
        };
        let mut out = Vec::new();
        encode(&h, sack, payload, &mut out);
        let _ = self.sock.send_to(&out, self.to);
    }

    fn send(&self, ty: PacketType, seq: u16, wnd: u32, payload: &[u8]) {
        self.send_with_id(
            ty,
            self.id.wrapping_add(1),
            seq,
            self.ack,
            wnd,
            None,
            payload,
        );
    }

    fn recv(&self) -> Option<(Header, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let p = Packet::decode(&buf[..n]).ok()?;
        Some((p.header, p.payload.to_vec()))
    }

    /// Receives data in order until `want` bytes, acking each packet with
    /// window `wnd`.
    fn receive(&mut self, want: usize, wnd: u32) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < want {
            assert!(Instant::now() < deadline, "stalled at {}", got.len());
            if let Some((h, payload)) = self.recv() {
                if h.ty == PacketType::Data && h.seq_nr == self.ack.wrapping_add(1) {
                    got.extend_from_slice(&payload);
                    self.ack = h.seq_nr;
                }
            }
            self.send(PacketType::State, self.seq, wnd, &[]);
        }
        got
    }
}

/// A listener that accepts one stream and hands it to `serve`.
fn listener(cfg: MuxConfig) -> UtpSocket {
    UtpSocket::bind_with("127.0.0.1:0", cfg, Box::new(|_, _| {})).expect("bind")
}

/// Data packets sent shuffled within windows of 256, each twice, with
/// stale duplicates from the window before and packets far beyond the
/// reorder horizon: the stream delivers every byte in order, memory stays
/// bounded.
#[test]
fn reordered_and_duplicated_packets_at_a_high_rate_arrive_intact() {
    let sock = listener(MuxConfig::default());
    let addr = sock.local_addr();
    let payload = data(4 << 20, 7);
    let expect = payload.clone();
    let reader = {
        let mux = sock.multiplexer().clone();
        thread::spawn(move || {
            let mut s = mux.accept_timeout(Duration::from_secs(20)).expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read");
            got
        })
    };
    let rss0 = rss_kib();
    let mut raw = Raw::connect(addr, 0x4000, 1 << 20);
    let chunks: Vec<&[u8]> = payload.chunks(1400).collect();
    let first = raw.seq;
    let mut rng = Rng(99);
    let mut sent = 0usize;
    for window in 0..chunks.len().div_ceil(256) {
        let lo = window * 256;
        let hi = (lo + 256).min(chunks.len());
        let mut order: Vec<usize> = (lo..hi).chain(lo..hi).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let last = first.wrapping_add((hi - 1) as u16);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "window {window} never acked");
            for &i in &order {
                let seq = first.wrapping_add(i as u16);
                raw.send(PacketType::Data, seq, 1 << 20, chunks[i]);
                sent += 1;
                if i % 16 == 0 {
                    // a stale duplicate and a packet from far ahead
                    if lo > 0 {
                        let old = first.wrapping_add(lo.saturating_sub(1 + i % 200) as u16);
                        raw.send(PacketType::Data, old, 1 << 20, b"stale");
                    }
                    raw.send(PacketType::Data, seq.wrapping_add(5_000), 1 << 20, b"ahead");
                }
            }
            // wait for the cumulative ack of the window's last packet
            let until = Instant::now() + Duration::from_millis(1_500);
            let mut acked = false;
            while !acked && Instant::now() < until {
                if let Some((h, _)) = raw.recv() {
                    acked =
                        h.ty == PacketType::State && !bittern_utp::packet::seq_less(h.ack_nr, last);
                }
            }
            if acked {
                break;
            }
        }
    }
    raw.seq = first.wrapping_add(chunks.len() as u16);
    raw.send(PacketType::Fin, raw.seq, 1 << 20, &[]);
    let got = reader.join().expect("reader");
    let rss = rss_kib().saturating_sub(rss0);
    println!(
        "{sent} data packets for {} ({} x2 shuffled), rss +{rss} KiB",
        chunks.len(),
        chunks.len()
    );
    assert_eq!(got.len(), expect.len());
    assert!(got == expect, "data differs");
    assert!(rss < 64 * 1024, "rss grew {rss} KiB");
}

/// Before and while the stream sends, the peer acks sequence numbers
/// never sent, far ahead and behind, with selective-ACK masks of all ones:
/// nothing breaks, and the real data still arrives intact.
#[test]
fn acks_for_data_never_sent_are_ignored() {
    let sock = listener(MuxConfig::default());
    let addr = sock.local_addr();
    let payload = data(300_000, 3);
    let writer = {
        let mux = sock.multiplexer().clone();
        let payload = payload.clone();
        thread::spawn(move || {
            let mut s = mux.accept_timeout(Duration::from_secs(20)).expect("accept");
            s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
            // give the liar time to lie before and during the sending
            thread::sleep(Duration::from_millis(300));
            s.write_all(&payload).expect("write");
            s.flush().expect("flush");
            s
        })
    };
    let mut raw = Raw::connect(addr, 0x5000, 1 << 20);
    let mut rng = Rng(5);
    let full_sack = [0xffu8; 32];
    for i in 0..20_000u32 {
        let ack = match i % 4 {
            0 => raw.ack.wrapping_add(30_000),
            1 => raw.ack.wrapping_sub(1 + (rng.next() % 40_000) as u16),
            2 => rng.next() as u16,
            _ => raw.ack.wrapping_add(1 + (rng.next() % 3) as u16),
        };
        let sack = (i % 2 == 0).then_some(&full_sack[..]);
        let wnd = if i % 3 == 0 { u32::MAX } else { 0 };
        raw.send_with_id(
            PacketType::State,
            raw.id.wrapping_add(1),
            raw.seq,
            ack,
            wnd,
            sack,
            &[],
        );
    }
    let got = raw.receive(payload.len(), 1 << 20);
    assert!(got == payload, "data differs");
    let s = writer.join().expect("the writer did not panic");
    drop(s);
}

/// A peer that acks with a zero window for ever: the write fails with a
/// timeout once `zero_window_timeout_us` passed, and the connection costs
/// no CPU while it waits.
#[test]
fn a_peer_with_a_zero_window_for_ever_times_out_without_spinning() {
    let mut cfg = MuxConfig::default();
    cfg.conn.zero_window_timeout_us = 3_000_000;
    let sock = listener(cfg);
    let addr = sock.local_addr();
    let writer = {
        let mux = sock.multiplexer().clone();
        thread::spawn(move || {
            let mut s = mux.accept_timeout(Duration::from_secs(20)).expect("accept");
            let started = Instant::now();
            let r = s.write_all(&data(4 << 20, 9)).and_then(|()| s.flush());
            (r, started.elapsed())
        })
    };
    let mut raw = Raw::connect(addr, 0x6000, 0);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    // ack whatever comes (a zero-window probe) with a zero window, and
    // keep the connection alive, for up to 30 s
    let mut received = 0u32;
    while !writer.is_finished() && t0.elapsed() < Duration::from_secs(30) {
        if let Some((h, _)) = raw.recv() {
            received += 1;
            if h.ty == PacketType::Data && h.seq_nr == raw.ack.wrapping_add(1) {
                raw.ack = h.seq_nr;
            }
        }
        raw.send(PacketType::State, raw.seq, 0, &[]);
    }
    let cpu = cpu_time().saturating_sub(cpu0);
    let (result, took) = writer.join().expect("writer");
    println!(
        "zero window: write ended after {took:?}: {result:?}; {received} packets to the peer, \
         process cpu {cpu:?} (all tests)"
    );
    assert!(result.is_err(), "the write must fail");
    assert!(took < Duration::from_secs(25), "took {took:?}");
    // probes back off: a sender spinning on the closed window would send
    // thousands (the process cpu is shared with other tests, so the wire
    // is the measure here)
    assert!(
        received < 100,
        "{received} packets while the window was shut"
    );
}

/// SYNs with random ids from 2,000 addresses in 127.0.0.0/8, while an
/// application accepts every stream (and never reads): the table stays at
/// its bound, half-open entries expire, and a real connection then moves
/// data. Then 100,000 packets of every type for random connection ids:
/// no state, no reply.
#[test]
fn syn_flood_and_random_connection_ids_are_bounded() {
    let mut cfg = MuxConfig {
        max_connections: 256,
        ..MuxConfig::default()
    };
    cfg.conn.half_open_timeout_us = 1_000_000;
    let sock = listener(cfg);
    let addr = sock.local_addr();
    let mux = sock.multiplexer().clone();
    let acceptor = {
        let mux = mux.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok(s) = mux.accept_timeout(Duration::from_secs(3)) {
                held.push(s);
            }
            held.len()
        })
    };
    let rss0 = rss_kib();
    let cpu0 = cpu_time();
    let mut rng = Rng(17);
    let mut peak = 0;
    for i in 0..2_000u32 {
        let ip = Ipv4Addr::new(127, 3, (i / 250) as u8, (i % 250 + 1) as u8);
        let Ok(s) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        for _ in 0..20 {
            let h = Header {
                ty: PacketType::Syn,
                connection_id: rng.next() as u16,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 1 << 20,
                seq_nr: rng.next() as u16,
                ack_nr: 0,
            };
            let mut out = Vec::new();
            encode(&h, None, &[], &mut out);
            let _ = s.send_to(&out, addr);
        }
        peak = peak.max(mux.connection_count());
    }
    thread::sleep(Duration::from_millis(300));
    peak = peak.max(mux.connection_count());
    println!(
        "syn flood: 40,000 SYNs, peak table {peak}, rss +{} KiB, cpu {:?}",
        rss_kib().saturating_sub(rss0),
        cpu_time().saturating_sub(cpu0)
    );
    assert!(peak <= 256, "table {peak}");
    assert!(peak >= 64, "the flood reached the table: {peak}");
    // half-open entries go after their timeout
    let deadline = Instant::now() + Duration::from_secs(30);
    while mux.connection_count() > 0 {
        assert!(Instant::now() < deadline, "{} left", mux.connection_count());
        thread::sleep(Duration::from_millis(100));
    }
    let accepted = acceptor.join().expect("acceptor");
    assert!(accepted >= 64);

    // a real connection, then random ids aimed at the socket meanwhile
    let server = {
        let mux = mux.clone();
        thread::spawn(move || {
            let mut s = mux.accept_timeout(Duration::from_secs(20)).expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read");
            got
        })
    };
    let client = UtpSocket::bind("127.0.0.1:0").expect("bind");
    let mut c = client
        .connect(addr, Duration::from_secs(20))
        .expect("a real peer gets in after the flood");
    let noise = UdpSocket::bind("127.4.0.1:0").expect("bind");
    noise
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let payload = data(1 << 20, 11);
    let send = {
        let payload = payload.clone();
        thread::spawn(move || {
            c.write_all(&payload).expect("write");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            thread::sleep(Duration::from_millis(500));
            c
        })
    };
    let cpu1 = cpu_time();
    for i in 0..100_000u32 {
        let ty = [
            PacketType::Data,
            PacketType::State,
            PacketType::Fin,
            PacketType::Reset,
        ][(i % 4) as usize];
        let h = Header {
            ty,
            connection_id: rng.next() as u16,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: rng.next() as u32,
            seq_nr: rng.next() as u16,
            ack_nr: rng.next() as u16,
        };
        let mut out = Vec::new();
        encode(&h, None, b"junk", &mut out);
        let _ = noise.send_to(&out, addr);
    }
    assert!(mux.connection_count() <= 1, "{}", mux.connection_count());
    let mut buf = [0u8; 64];
    assert!(
        noise.recv_from(&mut buf).is_err(),
        "no reply to packets for unknown connections"
    );
    println!(
        "100,000 packets for random ids: cpu {:?}",
        cpu_time().saturating_sub(cpu1)
    );
    let got = server.join().expect("server");
    drop(send.join().expect("sender"));
    assert!(got == payload, "data differs");
}
