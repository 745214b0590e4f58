//! CPU time and peak memory of this process over one phase, and the CPU
//! the host took from the machine meanwhile (Linux).

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

/// The machine's CPU ticks so far: (stolen by the hypervisor, all).
fn machine_ticks() -> Option<(u64, u64)> {
    stolen_and_all(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// From /proc/stat's `cpu` line: user nice system idle iowait irq softirq
/// steal (guest time is already inside user and nice).
fn stolen_and_all(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let stolen = *ticks.get(7)?;
    Some((stolen, ticks.iter().sum()))
}

/// Measures one phase: CPU seconds used, the peak resident set, and the
/// machine's CPU the host took.
pub struct Usage {
    cpu_at_start: Duration,
    machine_at_start: Option<(u64, u64)>,
}

/// What one phase used, and what the host took meanwhile.
pub struct PhaseUsage {
    pub cpu_s: f64,
    pub peak_rss_mib: Option<f64>,
    /// The share of the machine's CPU time the hypervisor gave elsewhere
    /// (steal), in percent: a shared VM's figures are the host's as much
    /// as ours when it is high.
    pub stolen_pct: Option<f64>,
}

impl Usage {
    /// Starts measuring; resets the kernel's peak-RSS mark so the peak is
    /// this phase's own.
    pub fn start() -> Self {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self {
            cpu_at_start: cpu_time(),
            machine_at_start: machine_ticks(),
        }
    }

    /// What the phase used since `start`.
    pub fn finish(self) -> PhaseUsage {
        let stolen_pct = self
            .machine_at_start
            .zip(machine_ticks())
            .and_then(|(start, end)| stolen_share(start, end));
        PhaseUsage {
            cpu_s: (cpu_time() - self.cpu_at_start).as_secs_f64(),
            peak_rss_mib: status_mib("self", "VmHWM:"),
            stolen_pct,
        }
    }
}

fn stolen_share(start: (u64, u64), end: (u64, u64)) -> Option<f64> {
    let all = end.1.checked_sub(start.1).filter(|all| *all > 0)?;
    let stolen = end.0.checked_sub(start.0)?;
    Some(100.0 * stolen as f64 / all as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_share_comes_from_the_cpu_line() {
        let stat = "cpu  542604 0 152791 1146555 21656 0 21860 3147 0 0\n\
                    cpu0 271302 0 76395 573277 10828 0 10930 1573 0 0\n";
        assert_eq!(
            stolen_and_all(stat),
            Some((3147, 542604 + 152791 + 1146555 + 21656 + 21860 + 3147))
        );
        // 30 ticks stolen of 200 over the phase.
        assert_eq!(stolen_share((10, 1000), (40, 1200)), Some(15.0));
        assert_eq!(stolen_share((10, 1000), (10, 1000)), None);
        assert_eq!(stolen_and_all("cpu  1 2 3\n"), None);
    }
}
