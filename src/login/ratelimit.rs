//! Per-client login rate limit: GCRA (a token bucket held as one timestamp
//! per client) in a bounded cache, so a flood of distinct addresses cannot
//! grow memory and no lock is taken.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::RateLimit;

/// Most clients tracked at once; the least recently seen are forgotten first.
const MAX_CLIENTS: u64 = 100_000;

pub struct RateLimiter {
    /// The configured limit, so a reload can tell whether it changed.
    limit: RateLimit,
    /// Time between two requests at the steady rate, in nanoseconds.
    interval: u64,
    /// How far ahead of now a client's schedule may run (the burst).
    tolerance: u64,
    start: Instant,
    /// Per client: the theoretical arrival time of its next request.
    clients: Cache<IpAddr, Arc<AtomicU64>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        let period = limit.per.as_nanos() as u64;
        let interval = period / u64::from(limit.requests);
        RateLimiter {
            limit,
            interval,
            tolerance: period - interval,
            start: Instant::now(),
            clients: Cache::builder()
                .max_capacity(MAX_CLIENTS)
                .time_to_idle(limit.per)
                .build(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// `Ok` to let the request in, `Err(wait)` to refuse it.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.check_at(client, self.start.elapsed().as_nanos() as u64)
    }

    fn check_at(&self, client: IpAddr, now: u64) -> Result<(), Duration> {
        let tat = self
            .clients
            .get_with(client, || Arc::new(AtomicU64::new(0)));
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let base = current.max(now);
            if base - now > self.tolerance {
                return Err(Duration::from_nanos(base - now - self.tolerance));
            }
            match tat.compare_exchange_weak(
                current,
                base + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let rl = RateLimiter::new(RateLimit {
            requests: 3,
            per: Duration::from_secs(60),
        });
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let other: IpAddr = "5.6.7.8".parse().unwrap();
        let t0 = 1_000_000_000;
        for _ in 0..3 {
            assert!(rl.check_at(ip, t0).is_ok());
        }
        let wait = rl.check_at(ip, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert!(rl.check_at(other, t0).is_ok(), "clients are independent");
        // One interval later, exactly one more request fits.
        let later = t0 + Duration::from_secs(20).as_nanos() as u64;
        assert!(rl.check_at(ip, later).is_ok());
        assert!(rl.check_at(ip, later).is_err());
    }
}
