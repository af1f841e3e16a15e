//! Failover across etcd members. etcd-client balances requests over every
//! endpoint and fails those that land on a dead member for as long as it is
//! down, so the store keeps one client per member instead: requests stick to
//! one member, and a request that fails there because the member is gone,
//! has no leader, or times out is sent again to the next member, until the
//! failover window (an election plus one request timeout) has passed.
//!
//! Only requests safe to repeat go through `call`: reads, transactions
//! guarded by a compare (a repeat of one that did commit fails its compare
//! and is re-decided by the caller), compaction and idempotent puts.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use futures::future::join_all;
use tonic::Code;

use super::tls::Tls;

/// How long a failed member is passed over before it is tried again.
const COOLDOWN: Duration = Duration::from_secs(5);
/// Time for etcd to elect a new leader (its default election timeout is 1 s;
/// an election may take a few rounds).
const ELECTION: Duration = Duration::from_secs(5);

struct Member {
    endpoint: String,
    /// Connected on first use (and again after a failed connect).
    client: tokio::sync::Mutex<Option<Client>>,
    /// Passed over until then; and whether its last failure was that it
    /// could not be reached at all (rather than an election under way).
    down_until: Mutex<Option<(Instant, bool)>>,
}

pub(super) struct Members {
    members: Vec<Member>,
    /// Without TLS: that is `tls`, which a renewal may change.
    options: ConnectOptions,
    pub(super) tls: Option<Tls>,
    preferred: AtomicUsize,
    /// An election plus one request timeout.
    window: Duration,
}

/// Whether an error says the member cannot be reached at all (down, refused,
/// reset), as opposed to a reachable member waiting for a leader.
fn is_unreachable(e: &etcd_client::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    matches!(
        e,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)
    ) || [
        "connect error",
        "connection refused",
        "broken pipe",
        "connection reset",
        "transport error",
    ]
    .iter()
    .any(|p| text.contains(p))
}

/// Whether a gRPC status's message says the connection went away under the
/// request: a member shutting down (an instance being replaced) sends an
/// HTTP/2 GOAWAY, and requests in flight end as "h2 protocol error" or
/// without a grpc-status trailer, never having been answered.
fn connection_went_away(message: &str) -> bool {
    [
        "transport",
        "connection",
        "broken pipe",
        "h2 protocol error",
        "goaway",
        "missing grpc-status trailer",
        "stream was terminated",
    ]
    .iter()
    .any(|p| message.to_ascii_lowercase().contains(p))
}

/// Whether an error says "this member cannot answer now" (so another may),
/// rather than something about the request itself.
pub(super) fn is_member_failure(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => true,
            // h2 resets, GOAWAY and refused connections surface as Unknown
            // or Internal.
            Code::Unknown | Code::Internal => connection_went_away(s.message()),
            _ => false,
        },
        _ => false,
    }
}

impl Members {
    pub(super) fn new(
        endpoints: &[String],
        options: ConnectOptions,
        timeout: Duration,
        tls: Option<Tls>,
    ) -> Members {
        Members {
            members: endpoints
                .iter()
                .map(|e| Member {
                    endpoint: e.clone(),
                    client: tokio::sync::Mutex::new(None),
                    down_until: Mutex::new(None),
                })
                .collect(),
            options,
            tls,
            preferred: AtomicUsize::new(0),
            window: ELECTION + timeout,
        }
    }

    /// The member to ask: the preferred one unless it is cooling down, else
    /// the next that is not; if all are, the preferred one anyway.
    fn pick(&self) -> usize {
        let n = self.members.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let now = Instant::now();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| {
                let down = self.members[i].down_until.lock();
                !down
                    .map(|d| d.is_some_and(|(t, _)| t > now))
                    .unwrap_or(false)
            })
            .unwrap_or(start)
    }

    fn mark_down(&self, i: usize, e: &etcd_client::Error) {
        if let Ok(mut d) = self.members[i].down_until.lock() {
            if d.is_none_or(|(t, _)| t <= Instant::now()) {
                tracing::warn!(member = %self.members[i].endpoint, error = %e, "etcd member failed; trying another");
            }
            *d = Some((Instant::now() + COOLDOWN, is_unreachable(e)));
        }
        let n = self.members.len();
        let _ =
            self.preferred
                .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Every member was just found unreachable: the store is down, not
    /// electing, and waiting out the window would only delay the error.
    fn all_unreachable(&self) -> bool {
        let now = Instant::now();
        self.members.iter().all(|m| {
            m.down_until
                .lock()
                .map(|d| d.is_some_and(|(t, unreachable)| unreachable && t > now))
                .unwrap_or(false)
        })
    }

    fn mark_up(&self, i: usize) {
        if let Ok(mut d) = self.members[i].down_until.lock() {
            *d = None;
        }
    }

    async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let mut slot = self.members[i].client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let mut options = self.options.clone();
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.options());
        }
        let c = Client::connect([self.members[i].endpoint.as_str()], Some(options)).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// After `e`: whether new TLS material was read (see `tls`); then
    /// every member is connected again with it, and none is passed over.
    async fn renewed_tls(&self, e: &etcd_client::Error) -> bool {
        let Some(tls) = &self.tls else {
            return false;
        };
        if !tls.renewed_after(e).await {
            return false;
        }
        for m in &self.members {
            *m.client.lock().await = None;
            if let Ok(mut d) = m.down_until.lock() {
                *d = None;
            }
        }
        true
    }

    /// Connects to every member once: settings that cannot work anywhere
    /// (a wrong CA, a missing client certificate, bad credentials) fail
    /// here; members that are merely down do not.
    pub(super) async fn check(&self, probe: &str) -> Result<(), etcd_client::Error> {
        let mut last = None;
        for i in 0..self.members.len() {
            let opts = etcd_client::GetOptions::new().with_count_only();
            let res = match self.client(i).await {
                Ok(mut c) => c.get(probe, Some(opts)).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.mark_down(i, &e);
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `op` on every member, each on its own client and within
    /// `timeout` (no failover: the point is each member's own answer).
    pub(super) async fn each<T, F, Fut>(
        &self,
        timeout: Duration,
        op: F,
    ) -> Vec<(String, Result<T, String>)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let ask = |i: usize| {
            let op = &op;
            async move {
                let asked = async { op(self.client(i).await?).await };
                tokio::time::timeout(timeout, asked).await
            }
        };
        let mut answers = join_all((0..self.members.len()).map(ask)).await;
        // A member that failed may be up: it restarted and closed the
        // connection its client held, or refused our client certificate
        // (expired in memory, it makes a member close a new connection right
        // after the handshake). Once, in turn: read the TLS material again if
        // that is why (as `call` does), then ask those members again on new
        // connections. A member down fails again.
        let failed: Vec<usize> = (0..answers.len())
            .filter(|&i| matches!(answers[i], Ok(Err(_))))
            .collect();
        for &i in &failed {
            if let Ok(Err(e)) = &answers[i] {
                if self.renewed_tls(e).await {
                    break;
                }
            }
        }
        for &i in &failed {
            *self.members[i].client.lock().await = None;
        }
        let again = join_all(failed.iter().map(|&i| ask(i))).await;
        for (i, answer) in failed.into_iter().zip(again) {
            answers[i] = answer;
        }
        (self.members.iter().zip(answers))
            .map(|(m, answer)| {
                let res = match answer {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (m.endpoint.clone(), res)
            })
            .collect()
    }

    /// Runs `op` on the member at `endpoint` alone, within `timeout`.
    pub(super) async fn on<T, F, Fut>(
        &self,
        endpoint: &str,
        timeout: Duration,
        op: F,
    ) -> Result<T, String>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let i = (self.members.iter())
            .position(|m| m.endpoint == endpoint)
            .ok_or_else(|| format!("{endpoint} is not a member of this store"))?;
        let ask = async {
            let c = self.client(i).await?;
            op(c).await
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Runs `op` on a live member, moving to the next on a member failure
    /// until the failover window has passed.
    pub(super) async fn call<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.window;
        let mut pause = Duration::from_millis(25);
        loop {
            let i = self.pick();
            let res = match self.client(i).await {
                Ok(c) => op(c).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(v) => {
                    self.mark_up(i);
                    return Ok(v);
                }
                Err(e) if Instant::now() < deadline && self.renewed_tls(&e).await => {}
                Err(e) if is_member_failure(&e) && Instant::now() < deadline => {
                    self.mark_down(i, &e);
                    if self.all_unreachable() {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn a_member_going_away_mid_request_is_a_member_failure() {
        // What requests in flight got from members stopped gracefully
        // (tests/tests/etcd_rehearsal.rs).
        for (code, message) in [
            (Code::Internal, "h2 protocol error: http2 error"),
            (Code::Unknown, "protocol error: missing grpc-status trailer, stream was terminated without a final status (possible truncation by a proxy or load balancer)"),
            (Code::Unknown, "transport error"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::DeadlineExceeded, "context deadline exceeded"),
        ] {
            assert!(is_member_failure(&status(code, message)), "{code:?} {message}");
        }
        // About the request itself: another member would say the same.
        for (code, message) in [
            (
                Code::Internal,
                "etcdserver: too many operations in txn request",
            ),
            (Code::InvalidArgument, "etcdserver: key is not provided"),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
        ] {
            assert!(
                !is_member_failure(&status(code, message)),
                "{code:?} {message}"
            );
        }
    }
}
