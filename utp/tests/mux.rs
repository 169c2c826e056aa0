//! The multiplexer without sockets: a recording `Transmit`, forged packets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bittern_utp::packet::{encode, Header, PacketType};
use bittern_utp::{Multiplexer, MuxConfig, Packet, Transmit};

#[derive(Default)]
struct Recorder(Mutex<Vec<(SocketAddr, Vec<u8>)>>);

impl Transmit for Recorder {
    fn send_to(&self, d: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.0.lock().unwrap().push((to, d.to_vec()));
        Ok(())
    }
}

fn packet(ty: PacketType, id: u16, seq: u16) -> Vec<u8> {
    let h = Header {
        ty,
        connection_id: id,
        timestamp_us: 1,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: seq,
        ack_nr: 0,
    };
    let mut out = Vec::new();
    encode(
        &h,
        None,
        if ty == PacketType::Data { b"xx" } else { b"" },
        &mut out,
    );
    out
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 40_000))
}

#[test]
fn syn_flood_is_bounded_by_the_backlog_and_the_table() {
    let rec = Arc::new(Recorder::default());
    let cfg = MuxConfig {
        backlog: 16,
        max_connections: 100,
        ..MuxConfig::default()
    };
    let mux = Multiplexer::new(rec.clone(), None, cfg).unwrap();
    for i in 0..2000 {
        assert!(mux.handle_datagram(addr(i), &packet(PacketType::Syn, i as u16, 1)));
    }
    mux.flush();
    assert_eq!(
        mux.connection_count(),
        16,
        "nobody accepted: only the backlog is kept"
    );
    let replies = rec.0.lock().unwrap().clone();
    assert_eq!(replies.len(), 16);
    for (to, d) in &replies {
        let h = Packet::decode(d).unwrap().header;
        assert_eq!(h.ty, PacketType::State);
        let SocketAddr::V4(v4) = to else {
            panic!("v4 peers only")
        };
        let [_, _, hi, lo] = v4.ip().octets();
        assert_eq!(
            h.connection_id,
            u16::from_be_bytes([hi, lo]),
            "reply carries the SYN's id"
        );
        assert_eq!(h.ack_nr, 1);
    }
    // Accepting one frees a backlog slot for the next SYN.
    let s = mux.accept_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(s.peer_addr().unwrap(), addr(0));
    assert!(mux.handle_datagram(addr(5000), &packet(PacketType::Syn, 7, 1)));
    assert_eq!(mux.connection_count(), 17);
}

#[test]
fn unknown_and_malformed_packets_cost_nothing_and_other_protocols_pass_through() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec.clone(), None, MuxConfig::default()).unwrap();
    for i in 0..1000u32 {
        for ty in [
            PacketType::Data,
            PacketType::State,
            PacketType::Fin,
            PacketType::Reset,
        ] {
            assert!(mux.handle_datagram(addr(i), &packet(ty, i as u16, 5)));
        }
        // uTP-shaped but with a truncated extension chain.
        let mut bad = packet(PacketType::Data, 1, 1);
        bad.truncate(20);
        bad[1] = 1;
        assert!(mux.handle_datagram(addr(i), &bad));
    }
    mux.flush();
    assert_eq!(mux.connection_count(), 0);
    assert!(
        rec.0.lock().unwrap().is_empty(),
        "no replies to forged packets"
    );
    assert!(!mux.handle_datagram(addr(1), b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaae1:t2:aa1:y1:re"));
    assert!(!mux.handle_datagram(addr(1), &[0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]));
}

#[test]
fn ipv6_peers_get_1452_byte_datagrams() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec.clone(), None, MuxConfig::default()).unwrap();
    let peer: SocketAddr = "[::1]:4000".parse().unwrap();
    mux.handle_datagram(peer, &packet(PacketType::Syn, 10, 1));
    let mut s = mux.accept_timeout(Duration::from_secs(1)).unwrap();
    // The initiator acks the STATE and opens a big window: reuse a DATA
    // packet with ack_nr = the acceptor's first seq - 1.
    let state = rec.0.lock().unwrap()[0].1.clone();
    let seq = Packet::decode(&state).unwrap().header.seq_nr;
    let mut ack = Packet::decode(&packet(PacketType::State, 11, 2))
        .unwrap()
        .header;
    ack.ack_nr = seq.wrapping_sub(1);
    let mut a = Vec::new();
    encode(&ack, None, &[], &mut a);
    mux.handle_datagram(peer, &a);
    std::io::Write::write_all(&mut s, &[9u8; 4000]).unwrap();
    let sent = rec.0.lock().unwrap().clone();
    let data: Vec<_> = sent
        .iter()
        .filter(|(_, d)| Packet::decode(d).unwrap().header.ty == PacketType::Data)
        .collect();
    assert!(!data.is_empty());
    assert!(data.iter().all(|(_, d)| d.len() <= 1452));
    assert_eq!(data[0].1.len(), 1452);
}

/// A connect to a peer that never answers ends with `Interrupted` soon
/// after the caller cancels it, long before its timeout, and leaves no
/// connection behind; uncancelled, it runs to its timeout.
#[test]
fn a_cancelled_connect_ends_at_once() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec.clone(), None, MuxConfig::default()).unwrap();
    let silent = addr(7);
    let began = std::time::Instant::now();
    let cancel_at = began + Duration::from_millis(100);
    let e = mux
        .connect_cancellable(silent, Duration::from_secs(10), &|| {
            std::time::Instant::now() >= cancel_at
        })
        .unwrap_err();
    let took = began.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(mux.connection_count(), 0);
    assert!(!rec.0.lock().unwrap().is_empty(), "no SYN was sent");
    let began = std::time::Instant::now();
    let e = mux
        .connect_cancellable(silent, Duration::from_millis(300), &|| false)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(began.elapsed() >= Duration::from_millis(300));
}

/// An ICMP "unreachable" refuses the connect whose SYN it quotes, and only
/// that one: an error quoting a DHT query or another connect's SYN to the
/// same address (a port that was closed a moment ago and is open now)
/// leaves a connect waiting; one quoting no payload at all refuses every
/// connect still waiting on that address; an open connection is never cut.
#[test]
fn an_unreachable_report_refuses_the_connect_whose_syn_it_quotes() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec.clone(), None, MuxConfig::default()).unwrap();
    let peer = addr(9);
    let syns = |rec: &Recorder| -> Vec<Vec<u8>> {
        rec.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(to, d)| *to == peer && d[0] == 0x41)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let connecting = {
        let mux = mux.clone();
        std::thread::spawn(move || mux.connect(peer, Duration::from_secs(60)))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while syns(&rec).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no SYN sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let syn = syns(&rec)[0].clone();
    let id = u16::from_be_bytes([syn[2], syn[3]]);
    // A DHT query's error, another connection's SYN, a data packet of ours.
    assert_eq!(mux.handle_unreachable(peer, b"d1:ad2:id20:aaaaaaaa"), 0);
    let mut other = syn.clone();
    other[2..4].copy_from_slice(&id.wrapping_add(2).to_be_bytes());
    assert_eq!(mux.handle_unreachable(peer, &other[..20]), 0);
    assert_eq!(
        mux.handle_unreachable(peer, &packet(PacketType::Data, id, 1)[..20]),
        0
    );
    // The right id at another address.
    assert_eq!(mux.handle_unreachable(addr(10), &syn[..20]), 0);
    assert_eq!(mux.connection_count(), 1, "the connect still waits");
    // Its own SYN, quoted in full or in part.
    assert_eq!(mux.handle_unreachable(peer, &syn[..8]), 1);
    let e = connecting.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(mux.connection_count(), 0);

    // No payload quoted: every connect waiting on the address is refused.
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let mux = mux.clone();
            std::thread::spawn(move || mux.connect(peer, Duration::from_secs(60)))
        })
        .collect();
    while mux.connection_count() < 2 {
        assert!(std::time::Instant::now() < deadline + Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(mux.handle_unreachable(peer, &[]), 2);
    for w in waiting {
        let e = w.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }

    // An open connection (accepted here) is not cut by any report.
    let open_peer = addr(11);
    let mut stream = accepted(&mux, &rec, open_peer);
    assert_eq!(mux.handle_unreachable(open_peer, &[]), 0);
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    use std::io::Write;
    stream.write_all(b"still open").unwrap();
}

#[test]
fn accept_until_takes_a_connection_and_ends_when_its_stop_is_dropped() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec, None, MuxConfig::default()).unwrap();
    let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
    let (done_tx, done) = crossbeam_channel::bounded(4);
    let acceptor = mux.clone();
    let t = std::thread::spawn(move || loop {
        match acceptor.accept_until(&stopped) {
            Ok(Some(_stream)) => done_tx.send("stream").unwrap(),
            Ok(None) => {
                done_tx.send("stopped").unwrap();
                break;
            }
            Err(e) => panic!("accept_until: {e}"),
        }
    });
    // A SYN is handed out as a stream.
    assert!(mux.handle_datagram(addr(1), &packet(PacketType::Syn, 7, 1)));
    mux.flush();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)), Ok("stream"));
    // Nothing else arrives: only dropping the stop ends the wait (there is
    // no timeout to fall back on, so this cannot pass by polling).
    assert!(done.recv_timeout(Duration::from_millis(300)).is_err());
    drop(stop);
    assert_eq!(done.recv_timeout(Duration::from_secs(20)), Ok("stopped"));
    t.join().unwrap();
}

/// An accepted connection from `peer` whose initiator acked our STATE and
/// opened a 1 MiB window (the recorder is cleared afterwards). The
/// initiator's data carries connection id 11 and starts at seq 2.
fn accepted(mux: &Multiplexer, rec: &Recorder, peer: SocketAddr) -> bittern_utp::UtpStream {
    mux.handle_datagram(peer, &packet(PacketType::Syn, 10, 1));
    let s = mux.accept_timeout(Duration::from_secs(1)).unwrap();
    let state = rec.0.lock().unwrap()[0].1.clone();
    let seq = Packet::decode(&state).unwrap().header.seq_nr;
    let mut ack = Packet::decode(&packet(PacketType::State, 11, 2))
        .unwrap()
        .header;
    ack.ack_nr = seq.wrapping_sub(1);
    let mut a = Vec::new();
    encode(&ack, None, &[], &mut a);
    mux.handle_datagram(peer, &a);
    mux.flush();
    rec.0.lock().unwrap().clear();
    s
}

fn acks(rec: &Recorder) -> Vec<u16> {
    rec.0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| Packet::decode(d).unwrap().header)
        .filter(|h| h.ty == PacketType::State)
        .map(|h| h.ack_nr)
        .collect()
}

/// An ACK goes out once per receive batch (at `flush`), however many
/// runs and datagrams the batch held; only once a quarter of the receive
/// buffer has arrived unacknowledged does it go out at once, so a batch
/// holding much of the window does not leave the sender waiting for its
/// end. Every byte reaches the reader.
#[test]
fn acks_go_out_once_per_batch_or_at_once_after_a_quarter_of_the_window() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = MuxConfig::default();
    cfg.conn.recv_buffer = 16 * 1024; // a quarter: 4 KiB
    cfg.tick = Duration::from_secs(3600); // no timer round sends the ACK
    let mux = Multiplexer::new(rec.clone(), None, cfg).unwrap();
    let peer = addr(3);
    let mut s = accepted(&mux, &rec, peer);
    // The round the timer runs when woken by the new connection is over
    // (no hook tells when; a second is ample).
    std::thread::sleep(Duration::from_secs(1));
    rec.0.lock().unwrap().clear();
    let data = |seq: u16, len: usize| {
        let h = Packet::decode(&packet(PacketType::Data, 11, seq))
            .unwrap()
            .header;
        let mut out = Vec::new();
        encode(&h, None, &vec![b'x'; len], &mut out);
        out
    };
    let run = |seqs: std::ops::Range<u16>| {
        let run: Vec<Vec<u8>> = seqs.map(|seq| data(seq, 1000)).collect();
        mux.handle_run(peer, run.iter().map(Vec::as_slice), &mut |_| {
            panic!("not utp?")
        });
    };
    // Two runs of 2 KiB (one batch): acknowledged once, at its end.
    run(2..4);
    run(4..6);
    assert_eq!(acks(&rec), [] as [u16; 0], "no ACK before the batch ends");
    mux.flush();
    assert_eq!(acks(&rec), [5], "one ACK for the batch");
    // A reader waiting for more than has come: the 4 KiB are there.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = s.try_clone().unwrap();
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn(move || {
        let mut got = vec![0u8; 9 * 1000];
        let r = std::io::Read::read_exact(&mut reader, &mut got);
        read_tx.send(r.map(|()| got)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(read_rx.try_recv().is_err(), "the reader waits for the rest");
    // 5 KiB in one run: a quarter of the buffer, acknowledged at once, and
    // the reader woken at once (no flush follows before it has read it).
    run(6..11);
    assert_eq!(acks(&rec), [5, 10], "acked before the batch ends");
    let got = read_rx
        .recv_timeout(Duration::from_secs(4))
        .unwrap()
        .unwrap();
    assert!(got.iter().all(|&b| b == b'x'));
    waiting.join().unwrap();
    // Reading 5 KiB opened the window by more than a quarter: the reader
    // sent a window update (ACK 10 again). The batch's end adds nothing.
    assert_eq!(acks(&rec), [5, 10, 10], "the reader's window update");
    mux.flush();
    assert_eq!(acks(&rec), [5, 10, 10], "nothing owed at the batch's end");
    // Single datagrams are acknowledged together, not one by one.
    for seq in 11..21 {
        assert!(mux.handle_datagram(peer, &data(seq, 2)));
    }
    mux.flush();
    assert_eq!(acks(&rec), [5, 10, 10, 20], "one ACK for the batch");
    let mut got = vec![0u8; 10 * 2];
    std::io::Read::read_exact(&mut s, &mut got).unwrap();
    assert!(got.iter().all(|&b| b == b'x'));
}

/// A message header and its block written with one vectored write leave
/// as full-sized packets: the header does not go out alone as a small
/// packet (which Nagle would then make the rest of the block wait behind).
#[test]
fn a_vectored_write_goes_out_in_full_packets() {
    let rec = Arc::new(Recorder::default());
    let mux = Multiplexer::new(rec.clone(), None, MuxConfig::default()).unwrap();
    let s = accepted(&mux, &rec, addr(4));
    let header = [7u8; 13];
    let block = vec![8u8; 16 * 1024];
    let bufs = [
        std::io::IoSlice::new(&header),
        std::io::IoSlice::new(&block),
    ];
    let n = std::io::Write::write_vectored(&mut &s, &bufs).unwrap();
    assert_eq!(n, header.len() + block.len());
    let sent = rec.0.lock().unwrap().clone();
    let data: Vec<&Vec<u8>> = sent
        .iter()
        .map(|(_, d)| d)
        .filter(|d| Packet::decode(d).unwrap().header.ty == PacketType::Data)
        .collect();
    assert!(!data.is_empty());
    assert_eq!(data[0].len(), 1472, "the first packet is full");
    let first = Packet::decode(data[0]).unwrap();
    assert_eq!(&first.payload[..13], &header);
    assert_eq!(first.payload[13], 8);
}
