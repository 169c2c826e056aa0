mod attack;
mod conn;
mod interop;
mod loopback;
mod mux;
mod shaped;
mod sim;
