//! Helpers shared by the benchmark binaries of `tests/benches`: repeated timing, the median,
//! and number formatting for the markdown tables they print.
//!
//! Each benchmark prints only its markdown section to stdout and its progress to stderr; it
//! owns its scenarios, this module owns none.

#![allow(dead_code)] // Each bench binary uses a part of it.

use std::future::Future;
use std::time::Duration;

/// Runs `measure` `runs` times (after one unmeasured warm-up) and returns the median.
pub(crate) async fn median_of<F, Fut>(runs: usize, mut measure: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    measure().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(measure().await);
    }
    times.sort();
    times[times.len() / 2]
}

/// `count` per second over `elapsed`, with thousands separators (`1,234,567`).
pub(crate) fn per_second(count: usize, elapsed: Duration) -> String {
    thousands((count as f64 / elapsed.as_secs_f64()) as u64)
}

/// Nanoseconds per item.
pub(crate) fn ns_per(count: usize, elapsed: Duration) -> String {
    format!("{:.0}", elapsed.as_nanos() as f64 / count as f64)
}

/// `n` with `,` between groups of three digits.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(&digits[end - 3..end]);
        end -= 3;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    groups.join(",")
}
