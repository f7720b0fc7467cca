//! Token buckets for per-service rate limits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::spec::ecosystem::RateLimit;

/// A token bucket: holds up to `burst` tokens, refilled at `requests / per`.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limit.requests) / self.limit.per.as_secs_f64()
    }

    /// Take a token at `now`; when none is left, how long until one is.
    pub fn take_at(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("bucket");
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate()).min(f64::from(self.limit.burst));
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.rate()))
        }
    }

    /// Take a token now.
    pub fn take(&self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    /// The limit, for messages.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let b = TokenBucket::new(RateLimit {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 3,
        });
        let t0 = Instant::now();
        assert!(b.take_at(t0).is_ok());
        assert!(b.take_at(t0).is_ok());
        assert!(b.take_at(t0).is_ok());
        let wait = b.take_at(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::from_millis(90),
            "{wait:?}"
        );
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_err());
    }
}
