//! uTP packet decoder (BEP 29): never panics; a decoded packet is
//! uTP-shaped, re-encodes (header, first SACK, payload) to a packet that
//! decodes to the same header and payload and a SACK that starts with the
//! same mask; fed to a live connection it never panics either.
#![no_main]

use bittern_utp::packet::{encode, Header, PacketType};
use bittern_utp::{looks_like_utp, Config, Connection, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else { return };
    assert!(looks_like_utp(data));
    let mut out = Vec::new();
    encode(&p.header, p.sack, p.payload, &mut out);
    let again = Packet::decode(&out).expect("re-encoded packet decodes");
    assert_eq!(again.header, p.header);
    assert_eq!(again.payload, p.payload);
    match (p.sack, again.sack) {
        (None, None) => {}
        (Some(m), None) => assert!(m.is_empty()),
        (Some(m), Some(a)) => assert_eq!(&a[..m.len().min(252)], &m[..m.len().min(252)]),
        (None, Some(_)) => panic!("sack appeared"),
    }
    // A connection that accepted a SYN and sent data takes the packet.
    let syn = Header {
        ty: PacketType::Syn,
        connection_id: p.header.connection_id.wrapping_sub(1),
        timestamp_us: 0,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: p.header.seq_nr.wrapping_sub(1),
        ack_nr: 0,
    };
    let mut s = Vec::new();
    encode(&syn, None, &[], &mut s);
    let mut c = Connection::accept(Config::default(), &Packet::decode(&s).unwrap(), p.header.ack_nr, 0);
    c.write(&[1u8; 10_000]);
    let mut buf = Vec::new();
    while c.poll_transmit(1, &mut buf) {}
    c.on_packet(&p, 2);
    c.on_tick(2_000_000);
    while c.poll_transmit(2_000_000, &mut buf) {
        assert!(Packet::decode(&buf).is_ok());
    }
});
