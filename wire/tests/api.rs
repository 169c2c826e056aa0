//! The public API used the way the engine uses it.

use bittern_wire::{decode_message, Bitfield, Handshake, InfoHash, Message, PeerId};

#[test]
fn handshake_then_bitfield_stream() {
    let ih = InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap();
    let hs = Handshake::new(ih, PeerId::generate(b"-BT0100-"));
    let mut have = Bitfield::new(20);
    have.set(3);
    have.set(19);
    let mut stream = hs.encode().to_vec();
    Message::Bitfield(have.as_bytes()).encode(&mut stream);
    Message::Interested.encode(&mut stream);

    let mut hbuf = [0u8; 68];
    hbuf.copy_from_slice(&stream[..68]);
    assert_eq!(Handshake::decode(&hbuf).unwrap(), hs);
    let rest = &stream[68..];
    let (m, used) = decode_message(rest, 1024).unwrap().unwrap();
    let Message::Bitfield(bytes) = m else {
        panic!("{m:?}")
    };
    let got = Bitfield::from_wire(bytes, 20).unwrap();
    assert_eq!(got.iter_ones().collect::<Vec<_>>(), vec![3, 19]);
    assert_eq!(
        decode_message(&rest[used..], 1024).unwrap(),
        Some((Message::Interested, 5))
    );
}
