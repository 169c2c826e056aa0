//! bittern-tracker: HTTP and UDP announce and scrape, tiers, the re-announce
//! schedule and a small embedded HTTP tracker.
//!
//! Not yet implemented.
#![deny(missing_docs)]
