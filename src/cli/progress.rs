//! Progress of long work, on stderr: a live bar on a terminal; off a terminal
//! (a batch job, `nohup`, CI, a Slurm log) plain lines at every 10 % and at a
//! steady interval, so logs show life; nothing with `--quiet`.
//!
//! A plain line: `extract: 1200/5000 images (24 %), 310.2 images/s, ETA 12 s, 3 skipped`.
//! The interval is 30 s; `XFER_PROGRESS_INTERVAL=SECONDS` changes it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between plain progress lines unless `XFER_PROGRESS_INTERVAL` says otherwise.
const DEFAULT_INTERVAL: f64 = 30.0;

struct Plain {
    what: String,
    unit: &'static str,
    total: u64,
    start: Instant,
    last: Instant,
    /// The last 10 % step printed.
    step: u64,
    interval: Duration,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Plain>>,
}

/// "12 s", "3 min 5 s", "2 h 4 min".
fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

impl Progress {
    /// Progress of `total` `unit`s of work called `what` (e.g. "extract", "images").
    pub fn new(what: &str, unit: &'static str, total: u64, quiet: bool) -> Progress {
        Self::with_terminal(what, unit, total, quiet, std::io::stderr().is_terminal())
    }

    fn with_terminal(
        what: &str,
        unit: &'static str,
        total: u64,
        quiet: bool,
        terminal: bool,
    ) -> Progress {
        if quiet {
            return Progress {
                bar: None,
                plain: None,
            };
        }
        if terminal {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"
                ))
                .expect("valid template"),
            );
            return Progress {
                bar: Some(bar),
                plain: None,
            };
        }
        let interval = std::env::var("XFER_PROGRESS_INTERVAL")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(DEFAULT_INTERVAL);
        let now = Instant::now();
        Progress {
            bar: None,
            plain: Some(Mutex::new(Plain {
                what: what.to_string(),
                unit,
                total,
                start: now,
                last: now,
                step: 0,
                interval: Duration::from_secs_f64(interval),
            })),
        }
    }

    /// `done` units finished, `skipped` of them skipped.
    pub fn set(&self, done: u64, skipped: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if skipped > 0 {
                bar.set_message(format!("{skipped} skipped"));
            }
        }
        if let Some(plain) = &self.plain {
            let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
            let step = (done * 10).checked_div(p.total).unwrap_or(10);
            let now = Instant::now();
            if step > p.step || now.duration_since(p.last) >= p.interval {
                p.step = p.step.max(step);
                p.last = now;
                eprintln!("{}", p.line(done, skipped, now));
            }
        }
    }

    /// Runs `f` (which prints) without tearing the bar.
    #[allow(dead_code)] // xfer-predict includes this file and prints nothing mid-run
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar (plain lines stay in the log).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Plain {
    fn line(&self, done: u64, skipped: usize, now: Instant) -> String {
        let secs = now.duration_since(self.start).as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * done as f64 / self.total as f64
        };
        let eta = if rate > 0.0 && done < self.total {
            format!(", ETA {}", duration((self.total - done) as f64 / rate))
        } else {
            String::new()
        };
        let skipped = if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        };
        format!(
            "{}: {done}/{} {} ({pct:.0} %), {rate:.1} {}/s{eta}{skipped}",
            self.what, self.total, self.unit, self.unit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_done_rate_and_eta() {
        let p = Plain {
            what: "extract".into(),
            unit: "images",
            total: 5000,
            start: Instant::now(),
            last: Instant::now(),
            step: 0,
            interval: Duration::from_secs(30),
        };
        let line = p.line(1200, 3, p.start + Duration::from_secs(4));
        assert_eq!(
            line,
            "extract: 1200/5000 images (24 %), 300.0 images/s, ETA 13 s, 3 skipped"
        );
        assert_eq!(duration(185.0), "3 min 5 s");
        assert_eq!(duration(7440.0), "2 h 4 min");
    }

    #[test]
    fn quiet_and_terminal_choices() {
        let q = Progress::with_terminal("x", "images", 10, true, false);
        assert!(q.bar.is_none() && q.plain.is_none());
        let t = Progress::with_terminal("x", "images", 10, false, true);
        assert!(t.bar.is_some() && t.plain.is_none());
        let l = Progress::with_terminal("x", "images", 10, false, false);
        assert!(l.bar.is_none() && l.plain.is_some());
    }
}
