//! The server process seen from /proc: RSS (VmRSS, VmHWM) and CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// (VmRSS, VmHWM) in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime of the process (its threads included), in seconds.
pub fn cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Samples VmRSS every 100 ms on a thread and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    pid: u32,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).map(|r| r.0).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kib(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            peak,
            handle: Some(handle),
            pid,
        }
    }

    /// Stops sampling: (peak sampled VmRSS, VmHWM now), KiB.
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let (rss, hwm) = rss_kib(self.pid).unwrap_or((0, 0));
        (self.peak.load(Ordering::Relaxed).max(rss), hwm)
    }
}

/// Busy CPU time of the whole machine (all cores, all processes) since boot, in seconds.
pub fn machine_busy_s() -> Option<f64> {
    machine_cpu().map(|m| m.tasks_s + m.irq_s)
}

/// Machine-wide CPU seconds since boot, split by who used them.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineCpu {
    /// user + nice + system of all tasks (kernel threads included).
    pub tasks_s: f64,
    /// irq + softirq + steal: interrupt work not charged to any task (loopback TCP runs here).
    pub irq_s: f64,
    /// utime + stime of kernel threads (children of kthreadd: ksoftirqd, kworker writeback, …).
    pub kthreads_s: f64,
}

pub fn machine_cpu() -> Option<MachineCpu> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let tasks = v.first()? + v.get(1)? + v.get(2)?;
    let irq = v.get(5)? + v.get(6)? + v.get(7).copied().unwrap_or(0);
    let mut kt = 0u64;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = st.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.get(1) == Some(&"2") || pid == "2" {
                kt += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                    + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    Some(MachineCpu {
        tasks_s: tasks as f64 / hz,
        irq_s: irq as f64 / hz,
        kthreads_s: kt as f64 / hz,
    })
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The processes whose pid, `comm` and command line (arguments joined by spaces; PostgreSQL puts
/// its process title there) satisfy `pick`.
pub fn pids_where(pick: impl Fn(u32, &str, &str) -> bool) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            pick(*pid, comm.trim_end(), cmdline.trim_end())
        })
        .collect()
}

/// CPU seconds of each process of `pids` that still exists.
pub fn cpu_of(pids: &[u32]) -> std::collections::HashMap<u32, f64> {
    pids.iter()
        .filter_map(|&p| cpu_s(p).map(|c| (p, c)))
        .collect()
}
