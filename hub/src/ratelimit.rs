//! Rate limiting of failed join attempts per source address: a wrong token is one guess, and
//! guesses are capped (and logged) so brute force gets nowhere. Memory is bounded: stale
//! windows are dropped, and past a cap the oldest go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counts failures per source in fixed windows.
#[derive(Debug)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
    max_failures: u32,
    window: Duration,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureLimiter {
            windows: Mutex::new(HashMap::new()),
            max_failures,
            window,
        }
    }

    /// `Err(retry_after)` when `source` has failed too often in the current window.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        let map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&source) {
            Some(w) if w.start.elapsed() < self.window && w.failures >= self.max_failures => {
                Err(self.window.saturating_sub(w.start.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure from `source`.
    pub fn failed(&self, source: IpAddr) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, w| w.start.elapsed() < window);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let w = map.entry(source).or_insert(Window {
            start: Instant::now(),
            failures: 0,
        });
        if w.start.elapsed() >= self.window {
            *w = Window {
                start: Instant::now(),
                failures: 0,
            };
        }
        w.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_limited_after_its_failures_and_others_are_not() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            l.failed(a);
        }
        assert!(l.check(a).is_err());
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn windows_expire() {
        let l = FailureLimiter::new(1, Duration::from_millis(0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.failed(a);
        assert!(l.check(a).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = FailureLimiter::new(1, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 50) {
            l.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_TRACKED);
    }
}
