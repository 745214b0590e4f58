//! CPU time and peak memory of this process over one phase (Linux).

use std::time::Duration;

/// CPU time (user + system) of the whole process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A value of /proc/<who>/status in MiB (VmRSS now, VmHWM peak).
fn status_mib(who: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn rss_mib() -> Option<f64> {
    status_mib("self", "VmRSS:")
}

/// Resident memory of another process.
pub fn rss_mib_of(pid: u32) -> Option<f64> {
    status_mib(&pid.to_string(), "VmRSS:")
}

/// Measures one phase: CPU seconds used and the peak resident set.
pub struct Usage {
    cpu_at_start: Duration,
}

impl Usage {
    /// Starts measuring; resets the kernel's peak-RSS mark so the peak is
    /// this phase's own.
    pub fn start() -> Self {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self {
            cpu_at_start: cpu_time(),
        }
    }

    /// (CPU seconds, peak RSS in MiB) since `start`.
    pub fn finish(self) -> (f64, Option<f64>) {
        (
            (cpu_time() - self.cpu_at_start).as_secs_f64(),
            status_mib("self", "VmHWM:"),
        )
    }
}
