//! Failed-login limits, in memory: a sliding window of failure times per
//! username and per client address. A restart forgets them, which only helps
//! someone who can also restart the server.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginLimit;

/// Keys kept before empty windows are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Windows {
    by_user: HashMap<String, VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

/// The login limiter shared by the workers.
#[derive(Debug)]
pub struct LoginLimiter {
    limit: LoginLimit,
    windows: Mutex<Windows>,
}

/// A login attempt let through: counted as a failure until [`LoginLimiter::succeeded`].
#[derive(Debug)]
pub struct Attempt {
    user: String,
    address: Option<IpAddr>,
    at: Instant,
}

/// How long to wait before the next attempt may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl LoginLimiter {
    pub fn new(limit: LoginLimit) -> Self {
        Self {
            limit,
            windows: Mutex::default(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.limit.window_s)
    }

    /// Lets an attempt through, counting it as a failure until told otherwise
    /// (so concurrent attempts cannot slip past the limit), or says how long to
    /// wait. An attempt over either limit is not counted.
    pub fn begin(&self, user: &str, address: Option<IpAddr>, now: Instant) -> Result<Attempt, Limited> {
        let window = self.window();
        // A poisoned lock only means a panic elsewhere while holding plain maps.
        let mut w = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.by_user.len() + w.by_address.len() > SWEEP_ABOVE {
            w.by_user.retain(|_, q| expire(q, now, window));
            w.by_address.retain(|_, q| expire(q, now, window));
        }
        let mut wait = Duration::ZERO;
        let user_q = w.by_user.entry(user.to_string()).or_default();
        expire(user_q, now, window);
        wait = wait.max(over(user_q, self.limit.max_failures_per_user, now, window));
        if let Some(ip) = address {
            let ip_q = w.by_address.entry(ip).or_default();
            expire(ip_q, now, window);
            wait = wait.max(over(ip_q, self.limit.max_failures_per_address, now, window));
        }
        if wait > Duration::ZERO {
            return Err(Limited { retry_after: wait });
        }
        w.by_user.entry(user.to_string()).or_default().push_back(now);
        if let Some(ip) = address {
            w.by_address.entry(ip).or_default().push_back(now);
        }
        Ok(Attempt {
            user: user.to_string(),
            address,
            at: now,
        })
    }

    /// The attempt logged in: it is not a failure. The user's earlier failures
    /// are forgotten too; the address's are not.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut w = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.by_user.remove(&attempt.user);
        if let Some(ip) = attempt.address
            && let Some(q) = w.by_address.get_mut(&ip)
            && let Some(i) = q.iter().rposition(|t| *t == attempt.at)
        {
            q.remove(i);
        }
    }
}

/// Drops failures older than the window; whether any remain.
fn expire(q: &mut VecDeque<Instant>, now: Instant, window: Duration) -> bool {
    while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
        q.pop_front();
    }
    !q.is_empty()
}

/// Zero while under `max`; else the time until enough failures age out.
fn over(q: &VecDeque<Instant>, max: usize, now: Instant, window: Duration) -> Duration {
    if q.len() < max {
        return Duration::ZERO;
    }
    // The failure whose ageing-out brings the count back under `max`.
    let Some(t) = q.get(q.len() - max) else {
        return window;
    };
    (*t + window).saturating_duration_since(now).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_user: usize, per_address: usize) -> LoginLimiter {
        LoginLimiter::new(LoginLimit {
            window_s: 60,
            max_failures_per_user: per_user,
            max_failures_per_address: per_address,
        })
    }

    #[test]
    fn failures_beyond_the_limit_wait_until_the_oldest_ages_out() {
        let l = limiter(3, 100);
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for i in 0..3 {
            l.begin("wei", ip, t0 + Duration::from_secs(i)).unwrap();
        }
        let e = l.begin("wei", ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(50));
        // Another user from the same address is not held back.
        l.begin("li", ip, t0 + Duration::from_secs(10)).unwrap();
        // Once the first failure is a window old, one more attempt is allowed.
        l.begin("wei", ip, t0 + Duration::from_secs(60)).unwrap();
        assert!(l.begin("wei", ip, t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn the_address_limit_spans_usernames_and_success_clears_the_user() {
        let l = limiter(2, 3);
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 2]));
        l.begin("a", ip, t0).unwrap();
        let ok = l.begin("a", ip, t0).unwrap();
        l.succeeded(ok);
        // The success forgot a's failures and did not count for the address.
        l.begin("a", ip, t0).unwrap();
        l.begin("b", ip, t0).unwrap();
        assert!(l.begin("c", ip, t0).is_err());
        assert!(l.begin("c", Some(IpAddr::from([10, 0, 0, 3])), t0).is_ok());
    }
}
