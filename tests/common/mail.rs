//! A real SMTP server for the tests: `tests/sdk/smtp_sink.py` (aiosmtpd, pinned in
//! `tests/sdk/requirements.txt` and installed by `scripts/test.sh`), started on a free port of
//! 127.0.0.1. Every message it receives comes back as JSON with its parts decoded
//! (`subject`, `from`, `to`, `rcpt_tos`, `content_type`, `text`, `html`, `raw`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{python, sdk_dir};

/// A running SMTP sink; killed on drop.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    messages: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Fails unless `aiosmtpd` imports at the version `tests/sdk/requirements.txt` pins.
pub fn require_aiosmtpd() {
    let requirements = std::fs::read_to_string(sdk_dir().join("requirements.txt"))
        .expect("read tests/sdk/requirements.txt");
    let pinned = requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("aiosmtpd=="))
        .expect("tests/sdk/requirements.txt pins aiosmtpd==VERSION")
        .trim()
        .to_string();
    let out = Command::new(python())
        .args(["-c", "import aiosmtpd; print(aiosmtpd.__version__)"])
        .output();
    let installed = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        installed,
        pinned,
        "aiosmtpd {pinned} is needed for {} (run `scripts/test.sh`, which runs \
         `pip install -r tests/sdk/requirements.txt`)",
        python()
    );
}

impl SmtpSink {
    /// Starts the sink and waits until it listens.
    pub fn start() -> SmtpSink {
        require_aiosmtpd();
        let mut child = Command::new(python())
            .arg(sdk_dir().join("smtp_sink.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tests/sdk/smtp_sink.py");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("sink stdout");
        let sink = messages.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(port.trim().parse::<u16>().ok());
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let err_pipe = child.stderr.take().expect("sink stderr");
        let err_lines = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                err_lines.lock().unwrap().push(line);
            }
        });
        let port = match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tests/sdk/smtp_sink.py did not start ({other:?}): {}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        SmtpSink {
            port,
            child,
            messages,
            stderr,
        }
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits up to 15 s until at least `n` messages arrived; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the SMTP sink received {} messages, expected {n}; its stderr:\n{}",
                    got.len(),
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
