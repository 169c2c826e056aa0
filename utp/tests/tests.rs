mod loopback;
mod sim;
