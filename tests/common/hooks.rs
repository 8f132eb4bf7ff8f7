//! A webhook endpoint for the end-to-end tests: listens on 127.0.0.1, answers 200 and keeps
//! every request it receives — or, started down ([`Receiver::start_down`]), answers 503 and
//! only counts them until [`Receiver::set_up`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request a webhook receiver got.
#[derive(Clone, Debug)]
pub struct Hook {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// A webhook endpoint on 127.0.0.1 that answers 200 and keeps what it receives.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Hook>>>,
    /// Answering 200 (and keeping requests) when set, 503 otherwise.
    up: Arc<AtomicBool>,
    /// Requests answered 503.
    refused: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_with(true)
    }

    /// A receiver that answers 503 (keeping nothing) until [`Receiver::set_up`].
    pub fn start_down() -> Receiver {
        Receiver::start_with(false)
    }

    /// From now on, answers 200 and keeps what it receives.
    pub fn set_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// How many requests were answered 503 so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn start_with(up: bool) -> Receiver {
        let up = Arc::new(AtomicBool::new(up));
        let refused = Arc::new(AtomicUsize::new(0));
        let (is_up, refusals) = (up.clone(), refused.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut headers = Vec::new();
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0usize);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut stream = reader.into_inner();
                if !is_up.load(Ordering::SeqCst) {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\
                          Connection: close\r\n\r\ndown",
                    );
                    continue;
                }
                keep.lock().unwrap().push(Hook { headers, body });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Receiver {
            url,
            got,
            up,
            refused,
        }
    }

    /// Waits until `pred` holds for the hooks received so far.
    pub fn wait(&self, what: &str, pred: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got.lock().unwrap().clone();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "webhook: {what}; received {} so far: {:?}",
                got.len(),
                got.iter()
                    .map(|h| String::from_utf8_lossy(&h.body).to_string())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
