//! What a node saves to rejoin after a restart without bootstrap nodes:
//! its id and a sample of good contacts.
//!
//! Format: a bencoded dictionary `{"id": 20 bytes, "nodes": compact IPv4
//! contacts (26 bytes each), "nodes6": compact IPv6 contacts (38 bytes)}`,
//! the same compact forms as KRPC. [`crate::Dht::save_state`] writes it
//! atomically (temporary file, fsync, rename).

use std::collections::BTreeMap;

use bittern_wire::bencode::{self, Limits, Value};

use crate::id::NodeId;
use crate::krpc::{decode_nodes, encode_nodes, DecodeError, NodeInfo, NODE_V4_LEN, NODE_V6_LEN};

/// Contacts kept in a saved state.
pub const SAVED_NODES: usize = 64;

/// A node's id and contacts, for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The node id to keep (other nodes know us by it).
    pub id: NodeId,
    /// Good contacts, most recently heard from first.
    pub nodes: Vec<NodeInfo>,
}

impl SavedState {
    /// Bencoded form.
    pub fn encode(&self) -> Vec<u8> {
        let (v4, v6): (Vec<NodeInfo>, Vec<NodeInfo>) =
            self.nodes.iter().partition(|n| n.addr.is_ipv4());
        let mut d = BTreeMap::new();
        d.insert(b"id".to_vec(), Value::bytes(self.id.0.to_vec()));
        d.insert(b"nodes".to_vec(), Value::Bytes(encode_nodes(&v4)));
        d.insert(b"nodes6".to_vec(), Value::Bytes(encode_nodes(&v6)));
        bencode::encode(&Value::Dict(d))
    }

    /// Parses a saved state.
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are not a saved state.
    pub fn decode(buf: &[u8]) -> Result<SavedState, DecodeError> {
        let limits = Limits {
            max_depth: 2,
            max_len: 64 * 1024,
            max_string_len: 64 * 1024,
            max_items: 16,
        };
        let v = bencode::decode_with(buf, &limits)?;
        let id = v
            .get(b"id")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .ok_or(DecodeError::Field("id"))?;
        let mut nodes = Vec::new();
        if let Some(b) = v.get(b"nodes").and_then(Value::as_bytes) {
            nodes.extend(decode_nodes(b, NODE_V4_LEN, "nodes")?);
        }
        if let Some(b) = v.get(b"nodes6").and_then(Value::as_bytes) {
            nodes.extend(decode_nodes(b, NODE_V6_LEN, "nodes6")?);
        }
        nodes.truncate(SAVED_NODES);
        Ok(SavedState {
            id: NodeId(id),
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let s = SavedState {
            id: NodeId([4; 20]),
            nodes: vec![
                NodeInfo {
                    id: NodeId([1; 20]),
                    addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                },
                NodeInfo {
                    id: NodeId([2; 20]),
                    addr: "[::1]:2".parse().unwrap(),
                },
            ],
        };
        assert_eq!(SavedState::decode(&s.encode()), Ok(s.clone()));
        assert!(SavedState::decode(b"d2:id3:abce").is_err());
        let bytes = s.encode();
        for cut in 0..bytes.len() {
            assert!(SavedState::decode(&bytes[..cut]).is_err());
        }
    }
}
