//! Bencode reader: never panics; what it reads re-encodes to a fixed point;
//! input that bendy's strict (canonical-only) decoder accepts re-encodes to
//! exactly the input; `dict_value_span` agrees with `decode` (first
//! duplicate wins).
#![no_main]

use bendy::decoding::{Decoder, Object};
use bittern_wire::bencode::{self, Limits};
use libfuzzer_sys::fuzz_target;

fn walk(obj: Object<'_, '_>) -> Result<(), bendy::decoding::Error> {
    match obj {
        Object::List(mut l) => {
            while let Some(o) = l.next_object()? {
                walk(o)?;
            }
        }
        Object::Dict(mut d) => {
            while let Some((_, o)) = d.next_pair()? {
                walk(o)?;
            }
        }
        Object::Integer(_) | Object::Bytes(_) => {}
    }
    Ok(())
}

/// bendy in strict mode accepts exactly one canonical value filling `data`.
fn bendy_strict_accepts(data: &[u8]) -> bool {
    let mut dec = Decoder::new(data).with_max_depth(32);
    let ok = match dec.next_object() {
        Ok(Some(o)) => walk(o).is_ok(),
        _ => false,
    };
    ok && matches!(dec.next_object(), Ok(None))
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_depth: 32, ..Limits::default() };
    let Ok(v) = bencode::decode_with(data, &limits) else {
        return;
    };
    let e = bencode::encode(&v);
    assert_eq!(bencode::decode_with(&e, &limits).as_ref(), Ok(&v));
    if bendy_strict_accepts(data) {
        assert_eq!(e, data, "canonical input must re-encode to itself");
    }
    if let Some(d) = v.as_dict() {
        for (k, val) in d {
            let span = bencode::dict_value_span(data, k, &limits)
                .expect("valid document")
                .expect("key present");
            assert_eq!(&bencode::decode_with(&data[span], &limits).unwrap(), val);
        }
    }
});
