//! The BEP 10 extension protocol: the handshake (extended message id 0)
//! and the table of extensions bittern speaks.
//!
//! Each side announces, in its handshake's `m` dictionary, the id under
//! which it wants to *receive* each extension. So a message we send uses
//! the peer's id ([`ExtensionHandshake::id_for`]) and a message we receive
//! carries ours ([`Extension::from_local_id`]). Our ids never change during
//! a connection (they are constants, [`Extension::local_id`]), so the
//! engine needs no per-peer table for the receiving direction.
//!
//! Reading is lenient field by field, strict on the frame: a payload that
//! is not a bencoded dictionary is an [`ExtensionError`] (the engine closes
//! that connection), while a field of the wrong type or size reads as
//! absent, and unknown keys are ignored, as libtorrent and Transmission do.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::bencode::{self, Limits, Value};

/// An extension handshake that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The payload is not valid bencode (or breaks the size limits).
    #[error("extension handshake is not bencode")]
    Bencode(#[from] bencode::Error),
    /// The payload is not a dictionary.
    #[error("extension handshake is not a dictionary")]
    NotADict,
}

/// An extension bittern implements, with the id we receive it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Extension {
    /// BEP 9 metadata exchange.
    UtMetadata,
    /// BEP 11 peer exchange.
    UtPex,
    /// libtorrent's `upload_only` message: a one-byte payload, nonzero
    /// when the sender now wants nothing (it completed, or is a partial
    /// seed), zero when it wants pieces again. The mid-connection
    /// counterpart of the handshake's `upload_only` key (BEP 21):
    /// libtorrent sends it on completion, but only to peers that list
    /// `upload_only` in their `m`.
    UploadOnly,
}

impl Extension {
    /// Every extension bittern speaks.
    pub const ALL: [Extension; 3] = [
        Extension::UtMetadata,
        Extension::UtPex,
        Extension::UploadOnly,
    ];

    /// The name used in `m`.
    pub fn name(self) -> &'static str {
        match self {
            Extension::UtMetadata => "ut_metadata",
            Extension::UtPex => "ut_pex",
            Extension::UploadOnly => "upload_only",
        }
    }

    /// The id we advertise and receive this extension under: stable for the
    /// life of the process (libtorrent's values, which makes packet traces
    /// easy to compare). Never 0, which means "disabled".
    pub fn local_id(self) -> u8 {
        match self {
            Extension::UtPex => 1,
            Extension::UtMetadata => 2,
            Extension::UploadOnly => 3,
        }
    }

    /// The extension a received extended message with this id is, if any.
    pub fn from_local_id(id: u8) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.local_id() == id)
    }
}

/// The BEP 10 handshake: which extensions the peer speaks, and facts about
/// it. Unknown keys are ignored; fields of the wrong type, size or range
/// read as absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionHandshake {
    /// Extension name to the id the *sender* wants to receive it under.
    /// Id 0 means "disabled" (a later handshake may switch one off), so it
    /// is kept here; [`ExtensionHandshake::id_for`] treats it as absent.
    pub m: BTreeMap<String, u8>,
    /// `v`: client name and version (lossily decoded as UTF-8).
    pub v: Option<String>,
    /// `p`: the sender's listen port, so a peer that dialled us can be
    /// dialled back (and told to others through PEX).
    pub p: Option<u16>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// `metadata_size`: size of the info dictionary in bytes (BEP 9).
    pub metadata_size: Option<u64>,
    /// `yourip`: our address as the sender sees it (4 or 16 bytes on the
    /// wire; other sizes read as absent).
    pub yourip: Option<IpAddr>,
    /// `ipv4`: the sender's own IPv4 address, if it knows one.
    pub ipv4: Option<Ipv4Addr>,
    /// `ipv6`: the sender's own IPv6 address, if it knows one.
    pub ipv6: Option<Ipv6Addr>,
    /// `upload_only` (BEP 21): the sender wants nothing (a seed or a
    /// partial seed), so its lack of interest is not a leecher's.
    pub upload_only: bool,
    /// `e` (BEP 10): the sender supports protocol encryption (MSE/PE), so
    /// dialling it with an encrypted handshake first is worth it.
    pub e: bool,
}

/// Limits for a handshake payload: small and shallow. Real handshakes are
/// a few hundred bytes.
fn limits() -> Limits {
    Limits {
        max_depth: 8,
        max_len: 1 << 20,
        max_string_len: 1 << 16,
        max_items: 10_000,
    }
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl ExtensionHandshake {
    /// A handshake that advertises every extension in [`Extension::ALL`]
    /// under its [`Extension::local_id`]; fill in the other fields.
    pub fn with_all_extensions() -> Self {
        let mut h = ExtensionHandshake::default();
        for e in Extension::ALL {
            h.advertise(e);
        }
        h
    }

    /// Add `ext` to `m` under our local id.
    pub fn advertise(&mut self, ext: Extension) {
        self.m.insert(ext.name().to_owned(), ext.local_id());
    }

    /// The id the sender wants `ext` sent under, or `None` if it does not
    /// speak it (absent or 0).
    pub fn id_for(&self, ext: Extension) -> Option<u8> {
        self.m.get(ext.name()).copied().filter(|&id| id != 0)
    }

    /// Read an extended message 0 payload.
    ///
    /// # Errors
    /// [`ExtensionError`] if it is not one bencoded dictionary within the
    /// limits (1 MiB, depth 8).
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let v = bencode::decode_with(payload, &limits())?;
        let d = v.as_dict().ok_or(ExtensionError::NotADict)?;
        let int = |k: &[u8]| d.get(k).and_then(Value::as_int);
        let bytes = |k: &[u8]| d.get(k).and_then(Value::as_bytes);
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
            v: bytes(b"v").map(|b| String::from_utf8_lossy(b).into_owned()),
            p: int(b"p")
                .and_then(|i| u16::try_from(i).ok())
                .filter(|&p| p != 0),
            reqq: int(b"reqq").and_then(|i| u32::try_from(i).ok()),
            metadata_size: int(b"metadata_size").and_then(|i| u64::try_from(i).ok()),
            yourip: bytes(b"yourip").and_then(ip_from),
            ipv4: bytes(b"ipv4")
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(Ipv4Addr::from),
            ipv6: bytes(b"ipv6")
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(Ipv6Addr::from),
            upload_only: int(b"upload_only").is_some_and(|i| i != 0),
            e: int(b"e").is_some_and(|i| i != 0),
        })
    }

    /// The bencoded payload (canonical: keys sorted, absent fields left
    /// out, `upload_only` and `e` written only when set).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        let m = self
            .m
            .iter()
            .map(|(k, &v)| (k.as_bytes().to_vec(), Value::Int(i64::from(v))))
            .collect();
        d.insert(b"m".to_vec(), Value::Dict(m));
        if self.e {
            d.insert(b"e".to_vec(), Value::Int(1));
        }
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
        if let Some(ip) = self.yourip {
            d.insert(b"yourip".to_vec(), Value::Bytes(ip_bytes(ip)));
        }
        if let Some(ip) = self.ipv4 {
            d.insert(b"ipv4".to_vec(), Value::Bytes(ip.octets().to_vec()));
        }
        if let Some(ip) = self.ipv6 {
            d.insert(b"ipv6".to_vec(), Value::Bytes(ip.octets().to_vec()));
        }
        if self.upload_only {
            d.insert(b"upload_only".to_vec(), Value::Int(1));
        }
        bencode::encode(&Value::Dict(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_exact_bytes() {
        let mut h = ExtensionHandshake::with_all_extensions();
        h.v = Some("bittern 0.1".into());
        h.p = Some(6881);
        h.reqq = Some(500);
        h.metadata_size = Some(31235);
        h.yourip = Some(IpAddr::from([127, 0, 0, 1]));
        h.upload_only = true;
        let b = h.encode();
        assert_eq!(
            b,
            b"d1:md11:upload_onlyi3e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e\
1:pi6881e4:reqqi500e11:upload_onlyi1e1:v11:bittern 0.16:yourip4:\x7f\x00\x00\x01e"
                .to_vec()
        );
        assert_eq!(ExtensionHandshake::decode(&b), Ok(h));
    }

    #[test]
    fn encryption_key_e_is_written_when_set_and_read_leniently() {
        let mut h = ExtensionHandshake::with_all_extensions();
        h.e = true;
        let b = h.encode();
        assert_eq!(
            b,
            b"d1:ei1e1:md11:upload_onlyi3e11:ut_metadatai2e6:ut_pexi1eee".to_vec()
        );
        assert_eq!(ExtensionHandshake::decode(&b), Ok(h));
        // Absent or 0: no support; a string `e` reads as absent.
        assert!(!ExtensionHandshake::decode(b"d1:md1:ei0eee").unwrap().e);
        assert!(!ExtensionHandshake::decode(b"d1:ei0e1:mdee").unwrap().e);
        assert!(!ExtensionHandshake::decode(b"d1:e1:11:mdee").unwrap().e);
        // libtorrent and Transmission send `e` as 1.
        assert!(ExtensionHandshake::decode(b"d1:ei1e1:mdee").unwrap().e);
    }

    #[test]
    fn ipv6_fields_round_trip() {
        let h = ExtensionHandshake {
            yourip: Some("::1".parse().unwrap()),
            ipv4: Some(Ipv4Addr::new(127, 0, 0, 2)),
            ipv6: Some("2001:db8::1".parse().unwrap()),
            ..ExtensionHandshake::default()
        };
        let b = h.encode();
        // 16-byte yourip, 4-byte ipv4, 16-byte ipv6 on the wire
        assert!(b.windows(10).any(|w| w == b"6:yourip16"));
        assert!(b.windows(7).any(|w| w == b"4:ipv44"));
        assert!(b.windows(8).any(|w| w == b"4:ipv616"));
        assert_eq!(ExtensionHandshake::decode(&b), Ok(h));
    }

    #[test]
    fn ids_are_stable_and_looked_up_by_name() {
        for e in Extension::ALL {
            assert_ne!(e.local_id(), 0);
            assert_eq!(Extension::from_local_id(e.local_id()), Some(e));
        }
        assert_eq!(Extension::from_local_id(0), None);
        assert_eq!(Extension::from_local_id(77), None);
        // libtorrent's ids, which bittern keeps
        assert_eq!(Extension::UtPex.local_id(), 1);
        assert_eq!(Extension::UtMetadata.local_id(), 2);
        assert_eq!(Extension::UploadOnly.local_id(), 3);
        assert_eq!(Extension::UploadOnly.name(), "upload_only");
        // a peer (Transmission style) with its own ids, one switched off
        let h = ExtensionHandshake::decode(
            b"d1:md11:lt_donthavei7e11:ut_metadatai3e6:ut_pexi0ee1:v14:Transmission 4e",
        )
        .unwrap();
        assert_eq!(h.id_for(Extension::UtMetadata), Some(3));
        assert_eq!(h.id_for(Extension::UtPex), None);
        assert_eq!(h.m.get("ut_pex"), Some(&0));
        assert_eq!(ExtensionHandshake::default().id_for(Extension::UtPex), None);
    }

    #[test]
    fn lenient_on_odd_fields() {
        let h = ExtensionHandshake::decode(
            b"d1:md1:xi300e1:yi-1e1:zi2ee1:pi70000e1:v2:\xff\xfe\
6:yourip3:abc11:upload_onlyi0e4:ipv45:12345e",
        )
        .unwrap();
        assert_eq!(
            h.m.into_iter().collect::<Vec<_>>(),
            vec![("z".to_string(), 2)]
        );
        assert_eq!(h.p, None);
        assert_eq!(h.v.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(h.yourip, None);
        assert_eq!(h.ipv4, None);
        assert!(!h.upload_only);
        // `m` of the wrong type, port 0, negative sizes, unknown keys
        let h = ExtensionHandshake::decode(
            b"d1:m3:abc1:pi0e13:metadata_sizei-5e4:reqqi-1e7:unknownd1:ai1eee",
        )
        .unwrap();
        assert_eq!(h, ExtensionHandshake::default());
    }

    #[test]
    fn malformed_handshakes_are_typed_errors() {
        assert_eq!(
            ExtensionHandshake::decode(b"le"),
            Err(ExtensionError::NotADict)
        );
        assert_eq!(
            ExtensionHandshake::decode(b"i1e"),
            Err(ExtensionError::NotADict)
        );
        for bad in [
            &b""[..],
            b"d1:m",
            b"d1:md11:ut_metadatai2eee_trailing",
            b"d1:md11:ut_metadatai2e",
            b"d2:xx4294967296:",
            b"dddddddddddddddddddddd",
        ] {
            assert!(
                matches!(
                    ExtensionHandshake::decode(bad),
                    Err(ExtensionError::Bencode(_))
                ),
                "{bad:?}"
            );
        }
        // a string over the 64 KiB bound is refused, not allocated
        let mut big = b"d1:v70000:".to_vec();
        big.resize(big.len() + 70_000, b'a');
        big.push(b'e');
        assert!(matches!(
            ExtensionHandshake::decode(&big),
            Err(ExtensionError::Bencode(_))
        ));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn prop_round_trip(
                m in proptest::collection::btree_map("[a-z_]{1,12}", any::<u8>(), 0..6),
                v in proptest::option::of(".{0,20}"),
                p in proptest::option::of(1u16..),
                reqq in proptest::option::of(any::<u32>()),
                size in proptest::option::of(0u64..(1 << 40)),
                yourip in proptest::option::of(prop_oneof![
                    any::<[u8; 4]>().prop_map(IpAddr::from),
                    any::<[u8; 16]>().prop_map(IpAddr::from),
                ]),
                ipv4 in proptest::option::of(any::<[u8; 4]>().prop_map(Ipv4Addr::from)),
                ipv6 in proptest::option::of(any::<[u8; 16]>().prop_map(Ipv6Addr::from)),
                upload_only in any::<bool>(),
                e in any::<bool>(),
            ) {
                let h = ExtensionHandshake {
                    m, v, p, reqq, metadata_size: size, yourip, ipv4, ipv6, upload_only, e,
                };
                prop_assert_eq!(ExtensionHandshake::decode(&h.encode()), Ok(h));
            }
        }
    }
}
