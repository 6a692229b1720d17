//! Process measurements: CPU time (getrusage), resident memory (/proc/self/status) and heap
//! allocations made through Rust's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The system allocator, counting every allocation (`alloc`, `alloc_zeroed` and `realloc`;
/// frees are not counted). Installed as the benchmark's `#[global_allocator]`. It only sees
/// allocations made by Rust code: librdkafka allocates in C with `malloc`, which bypasses it.
pub struct CountingAlloc;

/// Allocations so far. On its own cache line, so that counting does not false-share with
/// neighbouring statics; one relaxed increment per allocation is all the counting costs.
#[repr(align(64))]
struct Counter(AtomicU64);

static ALLOCATIONS: Counter = Counter(AtomicU64::new(0));

/// Heap allocations this process made through the global allocator so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.0.load(Ordering::Relaxed)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting has
// no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.0.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.0.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.0.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` and `layout` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// This process's resource usage so far (every thread's).
fn usage() -> libc::rusage {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU seconds (user + system) this process used so far.
pub fn cpu_seconds() -> f64 {
    let usage = usage();
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// User and system CPU seconds and voluntary and involuntary context switches so far, for
/// `BENCH_RUSAGE=1`'s breakdown: where CPU time goes that instruction counts do not show
/// (system calls, threads parking and waking).
fn rusage_breakdown() -> [f64; 4] {
    let usage = usage();
    [
        secs(usage.ru_utime),
        secs(usage.ru_stime),
        usage.ru_nvcsw as f64,
        usage.ru_nivcsw as f64,
    ]
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

/// Wall and CPU clocks and the allocation count at the start of a measured section.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    wall: Instant,
    cpu: f64,
    allocations: u64,
    breakdown: Option<[f64; 4]>,
}

impl Mark {
    /// Now.
    pub fn now() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
            allocations: allocations(),
            breakdown: std::env::var_os("BENCH_RUSAGE").map(|_| rusage_breakdown()),
        }
    }

    /// The section from this mark to now, as a result line. Under callgrind it first dumps
    /// the instructions counted so far (the cost gate's cases zeroed them when their
    /// partitions were assigned), so that shutdown is left out.
    pub fn finish(&self, messages: u64) -> CaseResult {
        crate::callgrind::dump_stats();
        // Read the counters before anything here allocates (reading /proc does).
        let process_allocations = allocations();
        let allocations = process_allocations - self.allocations;
        let seconds = self.wall.elapsed().as_secs_f64();
        let cpu_seconds = cpu_seconds() - self.cpu;
        if let Some(start) = self.breakdown {
            let end = rusage_breakdown();
            let per_record =
                |i: usize, scale: f64| (end[i] - start[i]) * scale / messages.max(1) as f64;
            eprintln!(
                "bench: rusage per record: user {:.3} µs, system {:.3} µs, {:.4} voluntary and {:.4} involuntary context switches",
                per_record(0, 1e6),
                per_record(1, 1e6),
                per_record(2, 1.0),
                per_record(3, 1.0)
            );
        }
        CaseResult {
            messages,
            seconds,
            cpu_seconds,
            peak_rss_kib: status_kib("VmHWM:"),
            latency_ms: None,
            allocations: Some(allocations),
            process_allocations: Some(process_allocations),
            registry_requests: None,
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
    /// Heap allocations through Rust's global allocator in the measured section; absent from
    /// the peers' result lines (separate programs without the counting allocator).
    #[serde(default)]
    pub allocations: Option<u64>,
    /// Heap allocations since the process started, up to the end of the measured section:
    /// the cost gate differences two runs of it, so that the records a consumer fetched
    /// before its first handled one count too (the measured section misses those).
    #[serde(default)]
    pub process_allocations: Option<u64>,
    /// HTTP requests to the schema registry (the registry Avro drain of `codecs.rs`).
    #[serde(default)]
    pub registry_requests: Option<u64>,
}

/// Runs a child process and parses the result line it prints last.
pub fn run_child(mut command: Command, what: &str) -> Result<CaseResult, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    // `BENCH_RUSAGE=1`'s breakdown, which the case printed to its stderr.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if line.starts_with("bench: rusage") {
            eprintln!("{line} ({what})");
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("{what}: no result line"))?;
    serde_json::from_str(line).map_err(|e| format!("{what}: bad result line {line}: {e}"))
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_allocator_sees_rust_allocations() {
        let before = allocations();
        let boxed = std::hint::black_box(Box::new([0_u8; 64]));
        drop(boxed);
        assert!(allocations() > before);
    }

    #[test]
    fn result_lines_carry_allocations_and_peer_lines_may_omit_them() {
        let ours = Mark::now().finish(10);
        let line = serde_json::to_string(&ours).unwrap();
        let back: CaseResult = serde_json::from_str(&line).unwrap();
        assert!(back.allocations.is_some());
        let peer = r#"{"messages":10,"seconds":1.0,"cpu_seconds":0.5,"peak_rss_kib":1024,"latency_ms":null}"#;
        let back: CaseResult = serde_json::from_str(peer).unwrap();
        assert_eq!(back.allocations, None);
        assert_eq!(back.messages, 10);
    }
}
