//! A webhook endpoint for the end-to-end tests: listens on 127.0.0.1, answers 200 and keeps
//! every request it receives.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
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
}

impl Receiver {
    pub fn start() -> Receiver {
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
                keep.lock().unwrap().push(Hook { headers, body });
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { url, got }
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
