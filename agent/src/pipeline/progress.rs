//! Progress of a long transfer: a live line on a terminal, a log line every
//! few seconds otherwise (in a Job, where logs are collected).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::meter::Meter;

/// How a long transfer reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A live line on a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Log lines every few seconds.
    Log,
    /// Nothing.
    Off,
}

pub struct Progress {
    task: Option<JoinHandle<()>>,
    live: bool,
}

impl Progress {
    /// Reports `meter` (bytes read from the source, or from the store) until dropped.
    pub fn start(mode: ProgressMode, label: &'static str, meter: Arc<Meter>) -> Self {
        let live = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        if mode == ProgressMode::Off {
            return Progress {
                task: None,
                live: false,
            };
        }
        let period = if live {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        };
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let bytes = meter.bytes();
                let elapsed = started.elapsed();
                let line = format_line(label, bytes, elapsed);
                if live {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                } else {
                    tracing::info!(bytes, elapsed_s = elapsed.as_secs(), "{line}");
                }
            }
        });
        Progress {
            task: Some(task),
            live,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if self.live {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            }
        }
    }
}

pub fn format_line(label: &str, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{label}: {} at {}/s, {}",
        human_bytes(bytes),
        human_bytes((bytes as f64 / secs) as u64),
        human_duration(elapsed)
    )
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_rates_and_durations() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m05s");
        assert_eq!(
            format_line("backup", 10 << 20, Duration::from_secs(2)),
            "backup: 10.0 MiB at 5.0 MiB/s, 2.0s"
        );
    }
}
