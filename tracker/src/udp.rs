//! UDP trackers (BEP 15): a pure packet codec and a blocking client.

pub(crate) mod client;
pub mod codec;
