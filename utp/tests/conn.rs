//! The pure `Connection` state machine, packet by packet: handshake ids and
//! numbers, fast retransmit, SACK, Nagle, deferred ACKs, zero window,
//! send-buffer stalls, resets, keep-alive and timeouts.

use bittern_utp::conn::Outgoing;
use bittern_utp::packet::{Header, PacketType};
use bittern_utp::{Config, Connection, Failure, Packet};

const MS: u64 = 1000;

fn drain(c: &mut Connection, now: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while c.poll_transmit(now, &mut buf) {
        out.push(buf.clone());
    }
    if c.poll_ack(now, &mut buf) {
        out.push(buf.clone());
    }
    out
}

fn hdr(d: &[u8]) -> Header {
    Packet::decode(d).expect("valid packet").header
}

fn deliver(to: &mut Connection, pkts: &[Vec<u8>], now: u64) {
    for p in pkts {
        to.on_packet(&Packet::decode(p).expect("valid"), now);
    }
}

/// A connected pair (a initiated with recv_id 1000, isn 100; b's isn 5000).
fn pair(cfg: Config) -> (Connection, Connection) {
    let mut a = Connection::connect(cfg, 1000, 100, 0);
    let syn = drain(&mut a, 0);
    assert_eq!(syn.len(), 1);
    let h = hdr(&syn[0]);
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr),
        (PacketType::Syn, 1000, 100)
    );
    let mut b = Connection::accept(cfg, &Packet::decode(&syn[0]).unwrap(), 5000, MS);
    assert_eq!(b.recv_id(), 1001);
    let state = drain(&mut b, MS);
    assert_eq!(state.len(), 1);
    let h = hdr(&state[0]);
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::State, 1000, 5000, 100)
    );
    deliver(&mut a, &state, 2 * MS);
    assert!(a.is_connected() && b.is_connected());
    (a, b)
}

#[test]
fn handshake_ids_and_numbers_follow_bep_29() {
    let (mut a, mut b) = pair(Config::default());
    a.write(b"hi");
    let d = drain(&mut a, 3 * MS);
    let h = hdr(&d[0]);
    // After the SYN the initiator sends with recv_id + 1; its data takes
    // the next number and acks the acceptor's STATE (seq 5000, so 4999).
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::Data, 1001, 101, 4999)
    );
    deliver(&mut b, &d, 4 * MS);
    b.write(b"yo");
    let d = drain(&mut b, 5 * MS);
    let h = hdr(&d[0]);
    // The acceptor's first data packet uses the number its STATE carried.
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::Data, 1000, 5000, 101)
    );
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&mut buf), 2);
    assert_eq!(&buf[..2], b"hi");
}

#[test]
fn data_payloads_fit_the_mtu() {
    let (mut a, _b) = pair(Config::default());
    a.write(&vec![7u8; 100_000]);
    let d = drain(&mut a, 3 * MS);
    assert!(!d.is_empty());
    for p in &d {
        assert!(p.len() <= 1472);
        assert!(Packet::decode(p).unwrap().payload.len() <= 1452);
    }
    assert_eq!(Packet::decode(&d[0]).unwrap().payload.len(), 1452);
}

/// Moves 30 full packets in lock-step so slow start opens cwnd; leaves
/// nothing in flight and the receive buffer empty.
fn grow(a: &mut Connection, b: &mut Connection) {
    a.write(&vec![1u8; 1452 * 30]);
    let mut r = vec![0u8; 1452 * 30];
    for round in 0..10 {
        let now = (3 + round) * MS;
        let d = drain(a, now);
        deliver(b, &d, now);
        b.read(&mut r);
        deliver(a, &drain(b, now), now);
    }
    assert!(a.cwnd() >= 8 * 1452, "cwnd {}", a.cwnd());
}

/// Sends `n` full packets from a to b, returns them (not delivered).
fn burst(a: &mut Connection, n: usize, now: u64) -> Vec<Vec<u8>> {
    a.write(&vec![1u8; 1452 * n]);
    let d = drain(a, now);
    assert_eq!(d.len(), n, "cwnd let {} of {n} go", d.len());
    d
}

#[test]
fn three_duplicate_acks_resend_the_hole_before_any_timeout() {
    let (mut a, mut b) = pair(Config::default());
    // Grow cwnd a little so 5 packets fit.
    grow(&mut a, &mut b);
    let d = burst(&mut a, 5, 16 * MS);
    let lost_seq = hdr(&d[0]).seq_nr;
    // Lose the first; each later one draws a (duplicate) ACK.
    for p in &d[1..] {
        deliver(&mut b, std::slice::from_ref(p), 17 * MS);
        let mut buf = Vec::new();
        assert!(b.poll_ack(17 * MS, &mut buf));
        let mut h = hdr(&buf);
        // Strip the SACK so only duplicate counting can find the loss.
        h.ty = PacketType::State;
        let mut bare = Vec::new();
        bittern_utp::packet::encode(&h, None, &[], &mut bare);
        deliver(&mut a, &[bare], 18 * MS);
    }
    let resent = drain(&mut a, 19 * MS);
    assert_eq!(resent.len(), 1, "exactly the hole is resent");
    assert_eq!(hdr(&resent[0]).seq_nr, lost_seq);
}

#[test]
fn selective_ack_of_three_later_packets_resends_the_hole() {
    let (mut a, mut b) = pair(Config::default());
    grow(&mut a, &mut b);
    let d = burst(&mut a, 5, 16 * MS);
    deliver(&mut b, &d[1..4], 17 * MS);
    let acks = drain(&mut b, 17 * MS);
    assert_eq!(acks.len(), 1, "one deferred ACK for the batch");
    let sack = Packet::decode(&acks[0]).unwrap().sack.map(<[u8]>::to_vec);
    assert_eq!(sack.as_deref(), Some(&[0b111, 0, 0, 0][..]));
    let before = a.cwnd();
    deliver(&mut a, &acks, 18 * MS);
    assert!(
        a.cwnd() < before,
        "loss halves cwnd: {before} -> {}",
        a.cwnd()
    );
    let resent = drain(&mut a, 19 * MS);
    assert_eq!(hdr(&resent[0]).seq_nr, hdr(&d[0]).seq_nr);
    // The sacked ones are not resent.
    assert!(resent.iter().all(|p| hdr(p).seq_nr != hdr(&d[1]).seq_nr));
}

#[test]
fn nagle_holds_a_second_small_packet_until_the_first_is_acked() {
    let (mut a, mut b) = pair(Config::default());
    a.write(b"one");
    let d1 = drain(&mut a, 3 * MS);
    assert_eq!(d1.len(), 1);
    a.write(b"two");
    a.write(b"three");
    assert!(drain(&mut a, 4 * MS).is_empty(), "second small packet held");
    deliver(&mut b, &d1, 5 * MS);
    deliver(&mut a, &drain(&mut b, 5 * MS), 6 * MS);
    let d2 = drain(&mut a, 6 * MS);
    assert_eq!(d2.len(), 1);
    assert_eq!(Packet::decode(&d2[0]).unwrap().payload, b"twothree");
}

#[test]
fn a_failed_send_is_not_loss() {
    let (mut a, mut b) = pair(Config::default());
    a.write(&vec![3u8; 1452 * 2]);
    let mut buf = Vec::new();
    assert!(a.poll_transmit(3 * MS, &mut buf));
    let seq = hdr(&buf).seq_nr;
    let cwnd = a.cwnd();
    a.undo_transmit(); // the socket said WouldBlock
    assert!(a.poll_transmit(4 * MS, &mut buf));
    assert_eq!(hdr(&buf).seq_nr, seq, "the same packet goes again");
    assert_eq!(a.cwnd(), cwnd, "no window cut");
    deliver(&mut b, &[buf.clone()], 5 * MS);
    let mut r = vec![0u8; 4000];
    assert_eq!(b.read(&mut r), 1452);
}

#[test]
fn zero_window_stops_the_sender_and_a_read_reopens_it() {
    let cfg = Config {
        recv_buffer: 8 * 1452,
        ..Config::default()
    };
    let (mut a, mut b) = pair(cfg);
    let mut now = 3 * MS;
    a.write(&vec![5u8; 40 * 1452]);
    let mut delivered = 0;
    for _ in 0..20 {
        let d = drain(&mut a, now);
        delivered += d.len();
        deliver(&mut b, &d, now + MS);
        deliver(&mut a, &drain(&mut b, now + MS), now + 2 * MS);
        now += 3 * MS;
    }
    assert_eq!(delivered, 8, "only the receive window was sent");
    let mut r = vec![0u8; 8 * 1452];
    assert_eq!(b.read(&mut r), 8 * 1452);
    let update = drain(&mut b, now);
    assert_eq!(update.len(), 1, "window update after the read");
    assert_eq!(hdr(&update[0]).wnd_size as usize, 8 * 1452);
    deliver(&mut a, &update, now + MS);
    assert!(!drain(&mut a, now + MS).is_empty(), "sending resumes");
}

#[test]
fn reset_fails_the_connection_and_refuses_a_connect() {
    let (mut a, b) = pair(Config::default());
    let mut buf = Vec::new();
    b.reset_packet(10 * MS, &mut buf);
    deliver(&mut a, &[buf.clone()], 11 * MS);
    assert_eq!(a.failure(), Some(Failure::Reset));

    let mut c = Connection::connect(Config::default(), 7, 1, 0);
    drain(&mut c, 0);
    let reset = Header {
        ty: PacketType::Reset,
        connection_id: 7,
        timestamp_us: 0,
        timestamp_diff_us: 0,
        wnd_size: 0,
        seq_nr: 0,
        ack_nr: 1,
    };
    let mut r = Vec::new();
    bittern_utp::packet::encode(&reset, None, &[], &mut r);
    deliver(&mut c, &[r], MS);
    assert_eq!(c.failure(), Some(Failure::Refused));
}

#[test]
fn syn_is_resent_twice_then_the_connect_times_out() {
    let mut c = Connection::connect(Config::default(), 7, 1, 0);
    let mut syns = drain(&mut c, 0).len();
    let mut now = 0;
    while c.failure().is_none() && now < 60_000 * MS {
        now += 10 * MS;
        c.on_tick(now);
        syns += drain(&mut c, now).len();
    }
    assert_eq!(syns, 3);
    assert_eq!(c.failure(), Some(Failure::TimedOut));
    // 1 s, then 2 s, then 4 s of backoff.
    assert!((7_000 * MS..7_100 * MS).contains(&now), "failed at {now}");
}

#[test]
fn idle_connection_sends_keepalives_and_a_silent_peer_times_out() {
    let (mut a, _b) = pair(Config::default());
    let mut keepalives = 0;
    let mut now = 2 * MS;
    while a.failure().is_none() && now < 200_000 * MS {
        now += 100 * MS;
        a.on_tick(now);
        for p in drain(&mut a, now) {
            assert_eq!(hdr(&p).ty, PacketType::State);
            keepalives += 1;
        }
    }
    assert_eq!(a.failure(), Some(Failure::TimedOut));
    assert!((120_000 * MS..121_000 * MS).contains(&now));
    assert_eq!(keepalives, 4, "one every 29 s");
}

#[test]
fn fin_is_ordered_after_data_and_both_sides_finish() {
    let (mut a, mut b) = pair(Config::default());
    a.write(b"last words");
    a.close(3 * MS);
    let d = drain(&mut a, 3 * MS);
    assert_eq!(d.len(), 2);
    assert_eq!(hdr(&d[1]).ty, PacketType::Fin);
    // FIN first, data second: EOF only after the data.
    deliver(&mut b, &d[1..], 4 * MS);
    assert!(!b.at_eof());
    deliver(&mut b, &d[..1], 5 * MS);
    let mut r = [0u8; 32];
    assert_eq!(b.read(&mut r), 10);
    assert!(b.at_eof());
    b.close(6 * MS);
    let d = drain(&mut b, 6 * MS);
    deliver(&mut a, &d, 7 * MS);
    deliver(&mut b, &drain(&mut a, 7 * MS), 8 * MS);
    assert!(a.is_finished(8 * MS) && b.is_finished(8 * MS));
    assert!(a.failure().is_none() && b.failure().is_none());
}

#[test]
fn an_accepted_connection_that_never_hears_back_expires_early() {
    let mut a = Connection::connect(Config::default(), 1, 1, 0);
    let syn = drain(&mut a, 0);
    let mut b = Connection::accept(Config::default(), &Packet::decode(&syn[0]).unwrap(), 9, 0);
    drain(&mut b, 0);
    b.on_tick(9_000 * MS);
    assert_eq!(b.failure(), None);
    b.on_tick(10_000 * MS);
    assert_eq!(b.failure(), Some(Failure::TimedOut));
    // One packet from the initiator makes it a real connection.
    let (mut a, mut b) = pair(Config::default());
    a.write(b"x");
    deliver(&mut b, &drain(&mut a, 3 * MS), 4 * MS);
    b.on_tick(30_000 * MS);
    assert_eq!(b.failure(), None);
}

#[test]
fn a_lost_window_update_is_recovered_by_the_zero_window_probe() {
    let cfg = Config {
        recv_buffer: 8 * 1452,
        ..Config::default()
    };
    let (mut a, mut b) = pair(cfg);
    let mut now = 3 * MS;
    a.write(&vec![5u8; 40 * 1452]);
    for _ in 0..20 {
        let d = drain(&mut a, now);
        deliver(&mut b, &d, now + MS);
        deliver(&mut a, &drain(&mut b, now + MS), now + 2 * MS);
        now += 3 * MS;
    }
    let mut r = vec![0u8; 8 * 1452];
    assert_eq!(b.read(&mut r), 8 * 1452);
    assert_eq!(
        drain(&mut b, now).len(),
        1,
        "the window update, lost on the way"
    );
    let mut sent = Vec::new();
    for _ in 0..200 {
        now += 10 * MS;
        a.on_tick(now);
        sent = drain(&mut a, now);
        if !sent.is_empty() {
            break;
        }
    }
    assert_eq!(sent.len(), 1, "one probe after the timer, at {now}");
    assert!(now < 2_000 * MS);
    deliver(&mut b, &sent, now);
    assert_eq!(b.read(&mut r), 1452);
    deliver(&mut a, &drain(&mut b, now), now);
    assert!(drain(&mut a, now).len() > 1, "the reopened window is used");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Forged packets (any type, seq/ack near or far from the live
        /// window, random SACK masks and payloads) interleaved with timer
        /// ticks never panic, and whatever the connection sends decodes.
        #[test]
        fn forged_packets_never_panic(
            steps in proptest::collection::vec(
                (0u8..5, -40i32..40, -40i32..40, proptest::collection::vec(any::<u8>(), 0..12),
                 0usize..3000, 0u64..700_000),
                1..60)
        ) {
            let (mut a, mut b) = pair(Config::default());
            a.write(&vec![1u8; 60_000]);
            b.write(&vec![2u8; 60_000]);
            let mut now = 3 * MS;
            let a_out = drain(&mut a, now);
            let b_out = drain(&mut b, now);
            let a_seq = hdr(&a_out[0]).seq_nr;
            let b_seq = hdr(&b_out[0]).seq_nr;
            let mut r = vec![0u8; 4096];
            for (ty, dseq, dack, mask, plen, dt) in steps {
                now += dt;
                let h = Header {
                    ty: [PacketType::Data, PacketType::Fin, PacketType::State,
                         PacketType::Reset, PacketType::Syn][usize::from(ty)],
                    connection_id: 1000,
                    timestamp_us: now as u32,
                    timestamp_diff_us: dt as u32,
                    wnd_size: (plen * 100) as u32,
                    seq_nr: b_seq.wrapping_add(dseq as u16),
                    ack_nr: a_seq.wrapping_add(dack as u16),
                };
                let mut p = Vec::new();
                bittern_utp::packet::encode(&h, Some(&mask), &vec![7u8; plen.min(1400)], &mut p);
                a.on_packet(&Packet::decode(&p).unwrap(), now);
                a.on_tick(now);
                a.read(&mut r);
                for out in drain(&mut a, now) {
                    prop_assert!(Packet::decode(&out).is_ok());
                    prop_assert!(out.len() <= 1472);
                }
                let _ = a.is_finished(now);
            }
        }
    }
}

/// A peer that ignores our window and floods packets past a hole: what
/// waits for the hole stays within the receive buffer (the reorder map
/// counts against the window), and the hole itself is still taken when it
/// comes (refusing it because the window is full of packets waiting for it
/// stalled the connection for good: 0 bytes readable).
#[test]
fn a_flood_past_a_hole_is_bounded_by_the_receive_buffer() {
    let cfg = Config {
        recv_buffer: 64 * 1452,
        ..Config::default()
    };
    let (_a, mut b) = pair(cfg);
    // a's first data packet would be 101; it is "lost", and 4,000 later
    // ones (5.8 MB) arrive regardless of b's window.
    let payload = vec![7u8; 1452];
    let mut buf = Vec::new();
    let data = |seq: u16, buf: &mut Vec<u8>| {
        let h = Header {
            ty: PacketType::Data,
            connection_id: 1001,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 1 << 20,
            seq_nr: seq,
            ack_nr: 4999,
        };
        buf.clear();
        bittern_utp::packet::encode(&h, None, &payload, buf);
    };
    for seq in 102..4102u16 {
        data(seq, &mut buf);
        b.on_packet(&Packet::decode(&buf).unwrap(), 3 * MS);
    }
    let acks = drain(&mut b, 3 * MS);
    let last = hdr(acks.last().expect("an ack"));
    assert_eq!(last.ack_nr, 100, "the hole is still open");
    assert_eq!(last.wnd_size, 0, "the window is used up by what waits");
    // The hole arrives: the window's worth behind it becomes readable.
    data(101, &mut buf);
    b.on_packet(&Packet::decode(&buf).unwrap(), 4 * MS);
    let mut r = vec![0u8; 8 << 20];
    let n = b.read(&mut r);
    assert!(n <= 65 * 1452, "{n} bytes buffered for a 64-packet window");
    assert!(n >= 60 * 1452, "only {n} bytes kept");
}

/// Written bytes are cut into whole packets as they are written (small
/// writes fill one packet before the next starts), and a data packet goes
/// to the socket from the send queue with its header written in place:
/// `poll_transmit_queued` hands out its sequence number, nothing is copied
/// into the caller's buffer, and the queued datagram is the packet.
#[test]
fn data_goes_out_from_the_send_queue_without_a_copy() {
    let cfg = Config::default();
    let (mut a, mut b) = pair(cfg);
    let mss = cfg.packet_size - 20;
    let data: Vec<u8> = (0..mss + 100).map(|i| (i * 7 + 3) as u8).collect();
    for chunk in data.chunks(333) {
        assert_eq!(a.write(chunk), chunk.len());
    }
    let mut scratch = vec![1, 2, 3];
    let mut got = Vec::new();
    while let Some(o) = a.poll_transmit_queued(3 * MS, &mut scratch) {
        let Outgoing::Queued(seq) = o else {
            panic!("copied although no selective ACK rides along");
        };
        assert!(scratch.is_empty());
        let d = a.queued_datagram(seq).expect("in the send queue").to_vec();
        let h = hdr(&d);
        assert_eq!((h.ty, h.seq_nr, h.ack_nr), (PacketType::Data, seq, 4999));
        got.push(d);
    }
    let lens: Vec<usize> = got.iter().map(|d| d.len() - 20).collect();
    assert_eq!(lens, [mss, 100]);
    deliver(&mut b, &got, 4 * MS);
    let mut buf = vec![0u8; data.len() + 10];
    assert_eq!(b.read(&mut buf), data.len());
    assert_eq!(&buf[..data.len()], &data[..]);
}

/// A data packet that must carry a selective ACK (its sender is missing
/// packets of the other direction) has a longer header than the room kept
/// in front of its payload: it is encoded into the caller's buffer, with
/// the mask, and still decodes to the bytes written.
#[test]
fn a_data_packet_with_a_selective_ack_is_encoded_into_the_callers_buffer() {
    let (mut a, mut b) = pair(Config::default());
    grow(&mut a, &mut b);
    let sent = burst(&mut a, 4, 10 * MS);
    assert_eq!(sent.len(), 4);
    // b misses a's first packet and gets the three after it.
    deliver(&mut b, &sent[1..], 11 * MS);
    assert_eq!(b.write(b"answer"), 6);
    let mut out = Vec::new();
    assert_eq!(
        b.poll_transmit_queued(12 * MS, &mut out),
        Some(Outgoing::Copied)
    );
    let p = Packet::decode(&out).expect("valid packet");
    assert_eq!(p.header.ty, PacketType::Data);
    assert_eq!(p.payload, b"answer");
    let mask = p.sack.expect("a selective ACK");
    assert_eq!(mask[0] & 0b111, 0b111, "the three later packets are acked");
}
