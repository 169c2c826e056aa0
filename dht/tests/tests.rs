mod interop;
mod sim;
mod socket;
