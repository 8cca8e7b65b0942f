//! Rate limits: failed join attempts per source address (a wrong token is one guess, and
//! guesses are capped and logged so brute force gets nowhere), and API calls per identity
//! (calls in flight, and refused calls per minute, so a viewer hammering what it may not do
//! costs little and fills no audit log). Memory is bounded: stale windows are dropped, and past
//! a cap the oldest go first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counts failures per source in fixed windows.
#[derive(Debug)]
pub struct FailureLimiter<K = std::net::IpAddr> {
    windows: Mutex<HashMap<K, Window>>,
    max_failures: u32,
    window: Duration,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureLimiter {
            windows: Mutex::new(HashMap::new()),
            max_failures,
            window,
        }
    }

    /// `Err(retry_after)` when `source` has failed too often in the current window.
    pub fn check(&self, source: &K) -> Result<(), Duration> {
        let map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(source) {
            Some(w) if w.start.elapsed() < self.window && w.failures >= self.max_failures => {
                Err(self.window.saturating_sub(w.start.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure from `source`.
    pub fn failed(&self, source: &K) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, w| w.start.elapsed() < window);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let w = map.entry(source.clone()).or_insert(Window {
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

/// Per-identity limits on API calls, checked before a request is even decoded.
#[derive(Debug)]
pub struct CallLimits {
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_identity: usize,
    /// Refused calls per identity and minute.
    pub refusals: FailureLimiter<String>,
}

impl CallLimits {
    pub fn new(in_flight: usize, refusals_per_minute: u32) -> Self {
        CallLimits {
            in_flight: Mutex::new(HashMap::new()),
            per_identity: in_flight.max(1),
            refusals: FailureLimiter::new(refusals_per_minute, Duration::from_secs(60)),
        }
    }

    /// A permit for one call by `identity` (held until the call ends), or why not.
    pub fn admit(&self, identity: &str) -> Result<OwnedSemaphorePermit, String> {
        if let Err(wait) = self.refusals.check(&identity.to_string()) {
            return Err(format!(
                "{identity} made too many refused calls; try again in {}s",
                wait.as_secs().max(1)
            ));
        }
        let sem = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_TRACKED {
                map.retain(|_, s| s.available_permits() < self.per_identity);
            }
            map.entry(identity.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_identity)))
                .clone()
        };
        sem.try_acquire_owned().map_err(|_| {
            format!(
                "{identity} has {} calls in flight already (the limit per identity)",
                self.per_identity
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::IpAddr;

    #[test]
    fn a_source_is_limited_after_its_failures_and_others_are_not() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(&a).is_ok());
            l.failed(&a);
        }
        assert!(l.check(&a).is_err());
        assert!(l.check(&b).is_ok());
    }

    #[test]
    fn windows_expire() {
        let l = FailureLimiter::new(1, Duration::from_millis(0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.failed(&a);
        assert!(l.check(&a).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = FailureLimiter::new(1, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 50) {
            l.failed(&IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn an_identity_gets_its_own_calls_in_flight_and_is_stopped_after_refusals() {
        let l = CallLimits::new(2, 3);
        let a = l.admit("user/a").unwrap();
        let _b = l.admit("user/a").unwrap();
        assert!(l.admit("user/a").unwrap_err().contains("in flight"));
        assert!(l.admit("user/b").is_ok(), "another identity is not held up");
        drop(a);
        assert!(l.admit("user/a").is_ok());
        for _ in 0..3 {
            l.refusals.failed(&"user/c".to_string());
        }
        assert!(l.admit("user/c").unwrap_err().contains("refused"));
    }
}
