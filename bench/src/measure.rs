//! Process measurements: CPU time (getrusage) and resident memory (/proc/self/status).

use std::time::Instant;

/// CPU seconds (user + system) this process used so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A `/proc/self/status` field in KiB (`VmHWM` peak resident, `VmRSS` current resident).
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Wall and CPU clocks at the start of a measured section.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    wall: Instant,
    cpu: f64,
}

impl Mark {
    /// Now.
    pub fn now() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// The section from this mark to now, as a result line.
    pub fn finish(&self, messages: u64) -> CaseResult {
        CaseResult {
            messages,
            seconds: self.wall.elapsed().as_secs_f64(),
            cpu_seconds: cpu_seconds() - self.cpu,
            peak_rss_kib: status_kib("VmHWM:"),
            latency_ms: None,
        }
    }
}

/// What one case run reports to the orchestrator (one JSON line on stdout).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaseResult {
    /// Messages processed in the measured section.
    pub messages: u64,
    /// Wall seconds of the measured section.
    pub seconds: f64,
    /// CPU seconds (user + system) of the measured section.
    pub cpu_seconds: f64,
    /// Peak resident set size of the process, KiB.
    pub peak_rss_kib: u64,
    /// Latency percentiles p50, p99, p99.9 in milliseconds (latency cases only).
    pub latency_ms: Option<[f64; 3]>,
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
