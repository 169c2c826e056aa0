//! Moves N MiB (default 256) over 127.0.0.1 between two bittern-utp
//! sockets in this process and prints MB/s and CPU seconds (both ends).
//!
//!     cargo run --release -p bittern-utp --example throughput -- 256

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use bittern_utp::{UtpSocket, UtpStream};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() -> std::io::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let listener = UtpSocket::bind("127.0.0.1:0")?;
    let addr = listener.local_addr();
    let chunk = vec![0x5au8; 1 << 20];
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = UtpStream::connect(addr, Duration::from_secs(5))?;
        for _ in 0..mib {
            s.write_all(&chunk)?;
        }
        s.shutdown(Shutdown::Write)?;
        let mut done = [0u8; 1];
        s.read_exact(&mut done)
    });
    let mut s = listener.accept()?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    s.write_all(&[1])?;
    sender.join().expect("sender thread")?;
    assert_eq!(total, mib << 20);
    println!(
        "{mib} MiB in {secs:.2} s = {:.1} MB/s, {cpu:.2} CPU s ({:.2} CPU s per GiB)",
        total as f64 / secs / 1e6,
        cpu * 1024.0 / mib as f64
    );
    Ok(())
}
