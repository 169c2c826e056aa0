//! bittern-wire integration tests: real files from real tools, hostile
//! inputs, whole-API round trips.

mod api;
