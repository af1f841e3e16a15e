//! Retries of transient failures: how many, how long between, who is told.

use std::time::Duration;

use crate::Error;

/// Told of every retry before its pause: what failed and how long until
/// the next attempt (cssctl prints it on stderr).
#[derive(Clone)]
pub struct RetryNotice(pub std::sync::Arc<NoticeFn>);

pub type NoticeFn = dyn Fn(&Error, Duration) + Send + Sync;

impl std::fmt::Debug for RetryNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryNotice")
    }
}

/// A pause drawn at random from the upper half of `delay`, so that many
/// clients failing together (a server restart) do not retry in lockstep.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..=1.0))
}

/// Retries of a transient failure (unreachable, 503, 502, 504, 429).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// None: keep trying (watches).
    pub attempts: Option<u32>,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: Some(5),
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_within_the_upper_half() {
        let d = Duration::from_millis(800);
        let pauses: Vec<Duration> = (0..200).map(|_| jittered(d)).collect();
        assert!(pauses
            .iter()
            .all(|p| *p >= Duration::from_millis(400) && *p <= d));
        let distinct: std::collections::BTreeSet<Duration> = pauses.into_iter().collect();
        assert!(distinct.len() > 50, "spread, not lockstep: {distinct:?}");
    }
}
