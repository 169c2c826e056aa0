mod interop;
mod sim;
