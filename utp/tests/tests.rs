mod conn;
mod interop;
mod loopback;
mod sim;
