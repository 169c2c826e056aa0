mod amplification;
mod bep42;
mod interop;
mod sim;
mod socket;
