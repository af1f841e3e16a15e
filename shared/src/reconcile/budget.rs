//! The ECS call budget of a reconcile run (docs/reference.md#reconciliation).
//! ECS throttles every call of an account and Region together, so the
//! account's deployments and consoles draw from the bucket we draw from:
//! every call of a run waits for a token of one bucket (`calls_per_second`,
//! a small burst), a ThrottlingException halves the rate and each success
//! after it adds a little back (AIMD, as TCP shares a link). Retries go
//! through the bucket too (the SDK's own retries are off for reconcile:
//! `AwsEcs::single_attempt`), so ECS sees no request that was not paid for.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::ecs::{EcsSource, Page, Retry, ServicesAnswer, SourceError};

/// Attempts of one call refused for its rate before the run gives up on it.
const THROTTLED_ATTEMPTS: u32 = 8;
/// Attempts of one call that met the network, a timeout or a 5xx.
const TRANSIENT_ATTEMPTS: u32 = 3;
/// The lowest rate halving reaches (one call in ten seconds).
const MIN_RATE: f64 = 0.1;

/// How fast a run may call ECS.
#[derive(Debug, Clone, Copy)]
pub struct BudgetSettings {
    /// Sustained calls per second (`ReconcileCallsPerSecond`).
    pub calls_per_second: f64,
    /// Calls that may go at once after a pause.
    pub burst: f64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            calls_per_second: 5.0,
            burst: 5.0,
        }
    }
}

/// A token bucket whose tokens may go negative: a caller reserves its
/// token at once and sleeps until the bucket has refilled to it, so that
/// concurrent callers queue fairly without holding the lock while asleep.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    max_rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(s: BudgetSettings) -> Bucket {
        let max_rate = s.calls_per_second.max(MIN_RATE);
        let burst = s.burst.max(1.0);
        Bucket {
            rate: max_rate,
            max_rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token; how long to wait before using it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// ECS refused the rate: half of it, and no burst until it refills.
    fn throttled(&mut self) {
        self.rate = (self.rate / 2.0).max(MIN_RATE);
        self.tokens = self.tokens.min(0.0);
    }

    /// A call went through: a twentieth of the configured rate back.
    fn succeeded(&mut self) {
        self.rate = (self.rate + self.max_rate / 20.0).min(self.max_rate);
    }
}

/// The calls a run made, as metrics and status show them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallFigures {
    /// Requests sent, by ECS operation (retries included).
    pub by_operation: BTreeMap<String, u64>,
    /// Requests ECS refused with a ThrottlingException.
    pub throttles: u64,
    /// The bucket's rate when the figures were taken (calls per second).
    pub rate: f64,
}

impl CallFigures {
    pub fn total(&self) -> u64 {
        self.by_operation.values().sum()
    }

    pub fn add(&mut self, o: &CallFigures) {
        for (op, n) in &o.by_operation {
            *self.by_operation.entry(op.clone()).or_default() += n;
        }
        self.throttles += o.throttles;
        self.rate = o.rate;
    }
}

/// An `EcsSource` whose every call waits for the budget.
pub struct Budgeted<'a> {
    inner: &'a dyn EcsSource,
    bucket: Mutex<Bucket>,
    figures: Mutex<CallFigures>,
}

impl<'a> Budgeted<'a> {
    pub fn new(inner: &'a dyn EcsSource, settings: BudgetSettings) -> Budgeted<'a> {
        Budgeted {
            inner,
            bucket: Mutex::new(Bucket::new(settings)),
            figures: Mutex::new(CallFigures::default()),
        }
    }

    pub fn figures(&self) -> CallFigures {
        let mut f = self
            .figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        f.rate = self.bucket.lock().unwrap_or_else(|e| e.into_inner()).rate;
        f
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut Bucket) -> T) -> T {
        f(&mut self.bucket.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn note(&self, operation: &'static str, throttled: bool) {
        let mut f = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        *f.by_operation.entry(operation.to_string()).or_default() += 1;
        f.throttles += u64::from(throttled);
    }

    /// One call through the budget, retried (each attempt paid for) while
    /// ECS throttles it or the network fails it.
    async fn call<T, F, Fut>(&self, operation: &'static str, send: F) -> Result<T, SourceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = self.with_bucket(|b| b.reserve(Instant::now()));
            tokio::time::sleep(wait).await;
            let res = send().await;
            let throttled = matches!(&res, Err(e) if e.retry == Retry::Throttled);
            self.note(operation, throttled);
            match res {
                Ok(v) => {
                    self.with_bucket(Bucket::succeeded);
                    return Ok(v);
                }
                Err(_) if throttled && attempt < THROTTLED_ATTEMPTS => {
                    self.with_bucket(Bucket::throttled);
                }
                Err(e) if e.retry == Retry::Transient && attempt < TRANSIENT_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl EcsSource for Budgeted<'_> {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListClusters", || self.inner.list_clusters(next))
            .await
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListContainerInstances", || {
            self.inner.list_container_instances(cluster, next)
        })
        .await
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeContainerInstances", || {
            self.inner.describe_container_instances(cluster, arns)
        })
        .await
    }

    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListTasks", || {
            self.inner.list_tasks(cluster, desired, next)
        })
        .await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeTasks", || self.inner.describe_tasks(cluster, arns))
            .await
    }

    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListServices", || self.inner.list_services(cluster, next))
            .await
    }

    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        self.call("DescribeServices", || {
            self.inner.describe_services(cluster, names)
        })
        .await
    }

    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: f64, burst: f64) -> Bucket {
        Bucket::new(BudgetSettings {
            calls_per_second: rate,
            burst,
        })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = bucket(5.0, 5.0);
        let t0 = b.last;
        for _ in 0..5 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // The sixth waits a fifth of a second, the seventh two fifths.
        assert_eq!(b.reserve(t0), Duration::from_millis(200));
        assert_eq!(b.reserve(t0), Duration::from_millis(400));
        // A second later the bucket has paid those and holds three tokens.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(b.reserve(t1), Duration::ZERO);
        }
        assert!(b.reserve(t1) > Duration::ZERO);
    }

    #[test]
    fn a_throttle_halves_the_rate_and_successes_win_it_back() {
        let mut b = bucket(8.0, 1.0);
        b.throttled();
        assert_eq!(b.rate, 4.0);
        b.throttled();
        assert_eq!(b.rate, 2.0);
        for _ in 0..10 {
            b.succeeded();
        }
        assert!((b.rate - 6.0).abs() < 1e-9, "{}", b.rate);
        for _ in 0..10 {
            b.succeeded();
        }
        assert_eq!(b.rate, 8.0, "never above the configured rate");
        for _ in 0..20 {
            b.throttled();
        }
        assert_eq!(b.rate, MIN_RATE);
    }
}
