//! The process's own figures, read from `/proc/self` at each scrape (Linux; elsewhere they are
//! left out): resident memory, CPU time and open file descriptors, under the names every
//! Prometheus client gives them, so stock dashboards find them.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (`USER_HZ`): Linux reports them
/// in this fixed unit to user space whatever the kernel's own tick rate, and it is 100 on every
/// architecture the server is built for (x86-64, arm64).
const USER_HZ: f64 = 100.0;

/// Encodes the process figures when scraped.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What `/proc/self` says about this process.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ProcessStats {
    resident_bytes: i64,
    cpu_seconds: f64,
    open_fds: i64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it cannot be read (not Linux).
    fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        Some(Self {
            resident_bytes: resident_bytes(&status)?,
            cpu_seconds: cpu_seconds(&stat)?,
            open_fds: i64::try_from(open_fds).ok()?,
        })
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes (the file says kB, meaning KiB).
fn resident_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time from `/proc/<pid>/stat`. The command name (second field) may hold
/// spaces and parentheses, so the fields are counted from the last `)`: `utime` and `stime`
/// are the 14th and 15th fields of the line, the 12th and 13th after the name.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let rss = ConstGauge::new(stats.resident_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let fds = ConstGauge::new(stats.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (odd (name) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 \
                    123 456789 1234 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.8));
    }

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let status = "Name:\tsplitsave\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\nThreads:\t4\n";
        assert_eq!(resident_bytes(status), Some(2048 * 1024));
    }

    #[test]
    fn this_process_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let stats = ProcessStats::read().expect("/proc/self");
            assert!(stats.resident_bytes > 0 && stats.open_fds > 2, "{stats:?}");
        }
    }
}
