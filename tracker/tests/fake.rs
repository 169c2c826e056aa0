//! Scripted fake trackers on loopback, for hostile and broken behaviour.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bittern_tracker::udp::codec::{Request, Response};
use bittern_tracker::ScrapeStats;

/// What the fake HTTP tracker does with one request.
pub enum HttpReply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status and body.
    Status(u16, Vec<u8>),
    /// 200 with a gzip-encoded body.
    Gzip(Vec<u8>),
    /// 302 to this location.
    Redirect(String),
    /// 200 with a 100 MB body, streamed (with or without Content-Length).
    Huge { content_length: bool },
    /// Read the request and never answer.
    Silence,
}

pub struct FakeHttp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Body bytes written by `Huge` replies.
    pub huge_sent: Arc<AtomicU64>,
}

type HttpScript = dyn Fn(usize, &str) -> HttpReply + Send + Sync;

impl FakeHttp {
    /// `script(n, request_line)` decides the reply to the n-th request.
    pub fn start(script: impl Fn(usize, &str) -> HttpReply + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let huge_sent = Arc::new(AtomicU64::new(0));
        let script: Arc<HttpScript> = Arc::new(script);
        {
            let (requests, stop, huge_sent) = (requests.clone(), stop.clone(), huge_sent.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, huge_sent, script) = (
                        requests.clone(),
                        stop.clone(),
                        huge_sent.clone(),
                        script.clone(),
                    );
                    thread::spawn(move || {
                        let _ = serve(stream, &requests, &stop, &huge_sent, &*script);
                    });
                }
            });
        }
        FakeHttp {
            addr,
            requests,
            stop,
            huge_sent,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut s: TcpStream,
    requests: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    huge_sent: &AtomicU64,
    script: &HttpScript,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&c| c == b'\r').unwrap()])
        .into_owned();
    let n = {
        let mut r = requests.lock().unwrap();
        r.push(line.clone());
        r.len() - 1
    };
    match script(n, &line) {
        HttpReply::Body(body) => reply(&mut s, "200 OK", "", &body),
        HttpReply::Status(code, body) => reply(&mut s, &format!("{code} Oops"), "", &body),
        HttpReply::Gzip(body) => {
            reply(&mut s, "200 OK", "Content-Encoding: gzip\r\n", &gzip(&body))
        }
        HttpReply::Redirect(to) => reply(&mut s, "302 Found", &format!("Location: {to}\r\n"), b""),
        HttpReply::Huge { content_length } => {
            const TOTAL: u64 = 100 << 20;
            let head = if content_length {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            };
            s.write_all(head.as_bytes())?;
            // Looks like the start of a valid reply, then never ends.
            let chunk = vec![b'1'; 64 * 1024];
            s.write_all(b"d5:peers104857000:")?;
            let mut sent = 0;
            while sent < TOTAL {
                s.write_all(&chunk)?;
                sent += chunk.len() as u64;
                huge_sent.store(sent, Ordering::SeqCst);
            }
            Ok(())
        }
        HttpReply::Silence => {
            let until = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
    }
}

fn reply(s: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A fake UDP tracker: `script(n, request)` returns the datagrams to send
/// back for the n-th decodable request.
pub struct FakeUdp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakeUdp {
    pub fn start(script: impl Fn(usize, &Request) -> Vec<Vec<u8>> + Send + 'static) -> FakeUdp {
        FakeUdp::start_on(UdpSocket::bind("127.0.0.1:0").unwrap(), script)
    }

    /// As `start`, on a given socket (e.g. IPv6 loopback).
    pub fn start_on(
        socket: UdpSocket,
        script: impl Fn(usize, &Request) -> Vec<Vec<u8>> + Send + 'static,
    ) -> FakeUdp {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(req) = Request::decode(&buf[..len]) else {
                        continue;
                    };
                    let n = {
                        let mut r = requests.lock().unwrap();
                        r.push(req.clone());
                        r.len() - 1
                    };
                    for packet in script(n, &req) {
                        let _ = socket.send_to(&packet, from);
                    }
                }
            });
        }
        FakeUdp {
            addr,
            requests,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A well-behaved UDP tracker's answer, with these peers.
pub fn good_udp(req: &Request, peers: &[SocketAddr]) -> Vec<Vec<u8>> {
    good_udp_family(req, peers, false)
}

/// As `good_udp`, writing announce peers in the IPv6 format if `ipv6`.
pub fn good_udp_family(req: &Request, peers: &[SocketAddr], ipv6: bool) -> Vec<Vec<u8>> {
    let resp = match req {
        Request::Connect { transaction_id } => Response::Connect {
            transaction_id: *transaction_id,
            connection_id: 0x4242,
        },
        Request::Announce {
            transaction_id,
            connection_id,
            ..
        } => {
            if *connection_id != 0x4242 {
                Response::Error {
                    transaction_id: *transaction_id,
                    message: "bad connection id".into(),
                }
            } else {
                Response::Announce {
                    transaction_id: *transaction_id,
                    interval: 1800,
                    leechers: 4,
                    seeders: 2,
                    peers: peers.to_vec(),
                }
            }
        }
        Request::Scrape {
            transaction_id,
            info_hashes,
            ..
        } => Response::Scrape {
            transaction_id: *transaction_id,
            stats: info_hashes
                .iter()
                .map(|h| ScrapeStats {
                    complete: u32::from(h.0[0]),
                    downloaded: 7,
                    incomplete: 1,
                })
                .collect(),
        },
    };
    vec![resp.encode(ipv6)]
}

/// A compact announce reply body with these IPv4 peers.
pub fn good_http_body(peers: &[SocketAddr]) -> Vec<u8> {
    let mut compact = Vec::new();
    for p in peers {
        if let SocketAddr::V4(a) = p {
            compact.extend_from_slice(&a.ip().octets());
            compact.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    let mut body = format!(
        "d8:completei2e10:incompletei4e8:intervali1800e12:min intervali1e5:peers{}:",
        compact.len()
    )
    .into_bytes();
    body.extend_from_slice(&compact);
    body.push(b'e');
    body
}
