mod interop;
mod loopback;
mod sim;
