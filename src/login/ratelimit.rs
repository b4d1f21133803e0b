//! Per-client login rate limit: GCRA (a token bucket held as one timestamp
//! per client) in a bounded cache, so a flood of distinct addresses cannot
//! grow memory and no lock is taken. With the Redis store, the same schedule
//! runs in Redis instead ([`crate::store`]), one budget for all replicas.
//!
//! A client is an IPv4 address or an IPv6 /64: one host usually holds a
//! whole /64, and would otherwise get a fresh budget per address.

use std::net::{IpAddr, Ipv6Addr};
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

    /// The time between two requests at the steady rate, and how far ahead
    /// of now a client's schedule may run (the burst).
    pub(crate) fn schedule(&self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.interval),
            Duration::from_nanos(self.tolerance),
        )
    }

    /// `Ok` to let the request in, `Err(wait)` to refuse it.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.check_at(client, self.start.elapsed().as_nanos() as u64)
    }

    fn check_at(&self, client: IpAddr, now: u64) -> Result<(), Duration> {
        let tat = self
            .clients
            .get_with(client_key(client), || Arc::new(AtomicU64::new(0)));
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

/// The budget a client address draws on: IPv4 as is (an IPv4-mapped IPv6
/// address included), IPv6 by its /64.
pub(crate) fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64() {
        let rl = RateLimiter::new(RateLimit {
            requests: 3,
            per: Duration::from_secs(60),
        });
        let t0 = 1_000_000_000;
        let admitted = (1..=12)
            .map(|i| format!("2001:db8:1:2::{i:x}").parse::<IpAddr>().unwrap())
            .filter(|ip| rl.check_at(*ip, t0).is_ok())
            .count();
        assert_eq!(admitted, 3, "12 addresses of one /64 share one budget");
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(rl.check_at(other, t0).is_ok(), "another /64 has its own");
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

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
