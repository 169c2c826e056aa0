//! The BEP 10 extension handshake (extended message id 0).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::bencode::{self, Limits, Value};

/// An extension handshake that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The payload is not valid bencode.
    #[error("extension handshake is not bencode")]
    Bencode(#[from] bencode::Error),
    /// The payload is not a dictionary.
    #[error("extension handshake is not a dictionary")]
    NotADict,
}

/// The BEP 10 handshake: which extensions the peer speaks, and facts about
/// it. Unknown keys are ignored; fields of the wrong type or out of range
/// read as absent, as other clients do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionHandshake {
    /// Extension name to the id the *sender* wants to receive it under;
    /// id 0 means "disabled".
    pub m: BTreeMap<String, u8>,
    /// Client name and version.
    pub v: Option<String>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// Size of the info dictionary in bytes (BEP 9).
    pub metadata_size: Option<u64>,
    /// Our address as the sender sees it (4 or 16 bytes).
    pub yourip: Option<Vec<u8>>,
}

/// Limits for a handshake payload: small and shallow.
fn limits() -> Limits {
    Limits {
        max_depth: 8,
        max_len: 1 << 20,
        max_string_len: 1 << 16,
        max_items: 10_000,
    }
}

impl ExtensionHandshake {
    /// Read an extended message 0 payload.
    ///
    /// # Errors
    /// [`ExtensionError`] if it is not a bencoded dictionary.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let v = bencode::decode_with(payload, &limits())?;
        let d = v.as_dict().ok_or(ExtensionError::NotADict)?;
        let int = |k: &[u8]| d.get(k).and_then(Value::as_int);
        let mut m = BTreeMap::new();
        if let Some(md) = d.get(b"m".as_slice()).and_then(Value::as_dict) {
            for (k, v) in md {
                if let (Ok(name), Some(id)) = (
                    std::str::from_utf8(k),
                    v.as_int().and_then(|i| u8::try_from(i).ok()),
                ) {
                    m.insert(name.to_owned(), id);
                }
            }
        }
        Ok(ExtensionHandshake {
            m,
            v: d.get(b"v".as_slice())
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            p: int(b"p").and_then(|i| u16::try_from(i).ok()),
            reqq: int(b"reqq").and_then(|i| u32::try_from(i).ok()),
            metadata_size: int(b"metadata_size").and_then(|i| u64::try_from(i).ok()),
            yourip: d
                .get(b"yourip".as_slice())
                .and_then(Value::as_bytes)
                .map(<[u8]>::to_vec),
        })
    }

    /// The bencoded payload (canonical).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        let m = self
            .m
            .iter()
            .map(|(k, &v)| (k.as_bytes().to_vec(), Value::Int(i64::from(v))))
            .collect();
        d.insert(b"m".to_vec(), Value::Dict(m));
        if let Some(v) = &self.v {
            d.insert(b"v".to_vec(), Value::from(v.as_str()));
        }
        if let Some(p) = self.p {
            d.insert(b"p".to_vec(), Value::Int(i64::from(p)));
        }
        if let Some(r) = self.reqq {
            d.insert(b"reqq".to_vec(), Value::Int(i64::from(r)));
        }
        if let Some(s) = self.metadata_size {
            d.insert(
                b"metadata_size".to_vec(),
                Value::Int(i64::try_from(s).unwrap_or(i64::MAX)),
            );
        }
        if let Some(ip) = &self.yourip {
            d.insert(b"yourip".to_vec(), Value::Bytes(ip.clone()));
        }
        bencode::encode(&Value::Dict(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_exact_bytes() {
        let mut h = ExtensionHandshake::default();
        h.m.insert("ut_metadata".into(), 3);
        h.m.insert("ut_pex".into(), 1);
        h.v = Some("bittern 0.1".into());
        h.p = Some(6881);
        h.reqq = Some(500);
        h.metadata_size = Some(31235);
        h.yourip = Some(vec![127, 0, 0, 1]);
        let b = h.encode();
        assert_eq!(
            b,
            b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
4:reqqi500e1:v11:bittern 0.16:yourip4:\x7f\x00\x00\x01e"
                .to_vec()
        );
        assert_eq!(ExtensionHandshake::decode(&b), Ok(h));
    }

    #[test]
    fn lenient_on_odd_fields() {
        let h = ExtensionHandshake::decode(b"d1:md1:xi300e1:yi-1e1:zi2ee1:pi70000e1:v2:\xff\xfee")
            .unwrap();
        assert_eq!(
            h.m.into_iter().collect::<Vec<_>>(),
            vec![("z".to_string(), 2)]
        );
        assert_eq!(h.p, None);
        assert_eq!(h.v.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(
            ExtensionHandshake::decode(b"le"),
            Err(ExtensionError::NotADict)
        );
        assert!(matches!(
            ExtensionHandshake::decode(b"d1:m"),
            Err(ExtensionError::Bencode(_))
        ));
    }
}
