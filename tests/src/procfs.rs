//! A process's memory and CPU from `/proc`, for the benchmarks.

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of `pid`, in seconds (at the kernel's usual
/// 100 ticks per second).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU share of one core (percent) and peak RSS (MiB) of `pid` over
/// `window`, sampled every 500 ms: what the benchmarks report.
pub async fn measure(pid: u32, window: std::time::Duration) -> (f64, f64) {
    let (cpu0, t0) = (cpu_seconds(pid), std::time::Instant::now());
    let mut rss_max = 0;
    while t0.elapsed() < window {
        rss_max = rss_max.max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    (share * 100.0, rss_max as f64 / 1024.0)
}
