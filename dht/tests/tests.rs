mod amplification;
mod attack;
mod bep32;
mod bep42;
mod interop;
mod sim;
mod socket;
