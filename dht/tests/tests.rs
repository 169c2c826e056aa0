mod attack;
mod interop;
mod sim;
mod socket;
