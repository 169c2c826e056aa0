//! The IO layer on real loopback sockets: bittern nodes only.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_dht::{is_krpc, Config, Dht, Runner, SendTo};
use bittern_wire::InfoHash;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// 50 standalone runners on 127.0.0.1 (issue 21's bittern-only DHT of 50
/// nodes in one process): each bootstraps from the first, one announces,
/// every node's get_peers lookup converges on it with the blocking API.
#[test]
fn runner_swarm_announce_and_get_peers() {
    let runners: Vec<Runner> = (0..50)
        .map(|_| Runner::bind(localhost(), Config::default()).expect("bind"))
        .collect();
    let first = runners[0].local_addr();
    for r in &runners[1..] {
        let size = r.dht().bootstrap(&[first]).expect("bootstrap");
        assert!(size >= 1);
    }
    // a second round lets early joiners learn of later ones
    for r in &runners {
        r.dht().bootstrap(&[first]).expect("bootstrap");
    }
    let ih = InfoHash([0x77; 20]);
    let res = runners[5].dht().announce(ih, Some(5555)).expect("announce");
    assert!(res.announced >= 6, "stored at {}", res.announced);
    let want: SocketAddr = "127.0.0.1:5555".parse().unwrap();

    for (i, r) in runners.iter().enumerate() {
        let peers = r.dht().get_peers(ih).expect("get_peers");
        assert!(peers.contains(&want), "runner {i} found {peers:?}");
        // the streaming form yields the peer and then ends (also when the
        // peer came from the runner's own store)
        let streamed: Vec<SocketAddr> = r.dht().get_peers_stream(ih).iter().collect();
        assert!(streamed.contains(&want), "runner {i} streamed {streamed:?}");
        assert!(r.dht().nodes().iter().all(|n| n.addr.ip().is_loopback()));
    }
}

/// The shared-socket seam: a dispatcher owns the reading (as bittern's UDP
/// thread will, for uTP, DHT and tracker replies), hands only KRPC packets
/// to the DHT, and the DHT sends through the same socket.
#[test]
fn dht_shares_a_socket_with_another_protocol() {
    let socket = Arc::new(UdpSocket::bind(localhost()).expect("bind"));
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let sender: Arc<dyn SendTo> = socket.clone();
    let dht = Arc::new(Dht::start(Config::default(), sender).expect("start"));
    let stop = Arc::new(AtomicBool::new(false));
    let (d, s, sock) = (Arc::clone(&dht), Arc::clone(&stop), Arc::clone(&socket));
    let dispatcher = std::thread::spawn(move || {
        let mut other = 0u32;
        let mut buf = [0u8; 4096];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if is_krpc(&buf[..n]) {
                    d.handle_datagram(from, &buf[..n], Instant::now());
                } else {
                    other += 1; // uTP would get it
                }
            }
        }
        other
    });
    let peer = Runner::bind(localhost(), Config::default()).expect("bind");
    let shared_addr = socket.local_addr().unwrap();
    // a uTP ST_SYN-like header (version 1, type 4) goes to the other protocol
    let probe = UdpSocket::bind(localhost()).unwrap();
    probe
        .send_to(&[0x41, 0, 0, 1, 0, 0, 0, 0], shared_addr)
        .unwrap();
    // DHT traffic both ways through the one socket
    assert_eq!(peer.dht().bootstrap(&[shared_addr]).expect("bootstrap"), 1);
    assert_eq!(dht.bootstrap(&[peer.local_addr()]).expect("bootstrap"), 1);
    let ih = InfoHash([0x42; 20]);
    let res = dht.announce(ih, None).expect("announce");
    assert_eq!(res.announced, 1);
    // implied_port: the peer stored the shared socket's port
    assert_eq!(
        peer.dht().get_peers(ih).expect("get_peers"),
        vec![shared_addr]
    );
    stop.store(true, Ordering::Relaxed);
    let other = dispatcher.join().expect("dispatcher");
    assert_eq!(other, 1, "the non-KRPC packet went to the other protocol");
    assert_eq!(dht.stats().malformed, 0);
}

/// Six runners on [::1]: contacts travel as `nodes6` (38 bytes each) and
/// peers as 18-byte values; a lookup from the last finds the announcer.
#[test]
fn ipv6_loopback_swarm() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    let runners: Vec<Runner> = (0..6)
        .map(|_| Runner::bind(v6, Config::default()).expect("bind [::1]"))
        .collect();
    let first = runners[0].local_addr();
    let mut size = 0;
    for r in runners.iter().skip(1) {
        size = r.dht().bootstrap(&[first]).expect("bootstrap");
    }
    // the last joiner was told of the others only through nodes6 in the
    // first runner's reply, and they answered it
    assert_eq!(size, 5, "last joiner's table");
    for r in &runners {
        r.dht().bootstrap(&[first]).expect("bootstrap");
    }
    let ih = InfoHash([0x66; 20]);
    let res = runners[2].dht().announce(ih, Some(6006)).expect("announce");
    assert!(res.announced >= 3);
    let want: SocketAddr = "[::1]:6006".parse().unwrap();
    assert!(runners[5]
        .dht()
        .get_peers(ih)
        .expect("get_peers")
        .contains(&want));
    for r in &runners {
        assert!(r
            .dht()
            .nodes()
            .iter()
            .all(|n| n.addr.ip().is_loopback() && n.addr.is_ipv6()));
    }
}

/// Garbage on the wire: every malformed KRPC packet is counted and dropped,
/// non-KRPC packets never reach the DHT, and the node keeps answering.
#[test]
fn garbage_is_counted_and_dropped() {
    let runner = Runner::bind(localhost(), Config::default()).expect("bind");
    let target = runner.local_addr();
    let junk = UdpSocket::bind(localhost()).unwrap();
    for i in 0..300u32 {
        // starts with 'd' (goes to the DHT) but is not KRPC
        let mut p = b"d1:t2:".to_vec();
        p.extend_from_slice(&i.to_be_bytes());
        junk.send_to(&p, target).unwrap();
        // not KRPC at all (the dispatcher keeps it from the DHT)
        junk.send_to(&[0x41, 0x00, (i % 256) as u8], target)
            .unwrap();
        if i % 20 == 19 {
            // stay under the socket's receive buffer: this tests the
            // decoder, not the kernel's drops
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    junk.send_to(&vec![b'd'; 5000], target).unwrap(); // oversize
    let peer = Runner::bind(localhost(), Config::default()).expect("bind");
    assert_eq!(
        peer.dht().bootstrap(&[target]).expect("bootstrap"),
        1,
        "still answers"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while runner.dht().stats().malformed < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = runner.dht().stats();
    assert_eq!(s.malformed, 300, "{s:?}");
    let junk_addr = junk.local_addr().unwrap();
    assert!(
        runner.dht().nodes().iter().all(|n| n.addr != junk_addr),
        "garbage source in the table"
    );
}

/// A node saves its state, stops, and a new process-equivalent restarts
/// from the file alone: same id, table refilled from the saved contacts,
/// lookups work, with no bootstrap list.
#[test]
fn restart_from_saved_state_rejoins_without_bootstrap() {
    let runners: Vec<Runner> = (0..8)
        .map(|_| Runner::bind(localhost(), Config::default()).expect("bind"))
        .collect();
    let first = runners[0].local_addr();
    for r in runners.iter().skip(1).chain(runners.iter()) {
        r.dht().bootstrap(&[first]).expect("bootstrap");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dht.state");
    let mut runners = runners;
    let leaving = runners.pop().expect("eight runners");
    let old_id = leaving.dht().id();
    leaving.dht().save_state(&path).expect("save");
    assert!(
        !dir.path().join("dht.state.tmp").exists(),
        "temporary file renamed away"
    );
    drop(leaving);

    let saved = Dht::load_state(&path).expect("load");
    assert_eq!(saved.id, old_id);
    assert!(
        saved.nodes.len() >= 5,
        "{} contacts saved",
        saved.nodes.len()
    );
    let config = Config {
        id: Some(saved.id),
        ..Config::default()
    };
    let back = Runner::bind(localhost(), config).expect("bind");
    assert_eq!(back.dht().id(), old_id);
    let size = back.dht().rejoin(&saved).expect("rejoin");
    assert!(size >= 5, "table after rejoin: {size}");
    let ih = InfoHash([0x99; 20]);
    runners[3].dht().announce(ih, Some(3333)).expect("announce");
    let want: SocketAddr = "127.0.0.1:3333".parse().unwrap();
    assert!(back.dht().get_peers(ih).expect("get_peers").contains(&want));
    // a corrupt file is an error, not a panic
    std::fs::write(&path, b"d2:id1:xe").unwrap();
    assert!(matches!(
        Dht::load_state(&path),
        Err(bittern_dht::Error::State(_))
    ));
}
