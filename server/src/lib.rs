//! Server mode: the same router as the Lambdas, served by axum, plus what the
//! AWS plumbing does for the Lambdas (SQS polling, the compaction timer) and
//! an optional simulated fleet.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use css::api::{self, AppState, Identity};
use css::config::StoreArgs;
use css::reconcile::{EcsSource, Reconciler, RunScope, Settings};
use css::setup::{self, CursorChoice, EcsChoice, Overrides, SetupError, StoreChoice, Wants};
use css::store::StateStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod demo;
pub mod health;
pub mod sqs;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "css-server",
    version,
    about = "cluster-state-service in one process: the query API on an embedded store (or etcd), \
             fed by an SQS queue of ECS events and/or a simulated demo fleet",
    after_help = "Every flag can also be set by the environment variable shown with it."
)]
pub struct ServerConfig {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "CSS_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,
    /// SQS queue of ECS events (EventBridge messages) to long-poll, as the
    /// Lambda event source would; malformed messages stay for the redrive policy.
    #[arg(long, env = "CSS_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Simulate a lively fleet (3 clusters, a few hundred tasks, tasks starting
    /// and stopping every few seconds) through the ingest path.
    #[arg(long, env = "CSS_DEMO")]
    pub demo: bool,
    /// How often the demo fleet changes.
    #[arg(long, env = "CSS_DEMO_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub demo_interval: Duration,
    /// Reconcile the store with the ECS API of the running identity's account
    /// and region (AWS credentials and region from the usual AWS variables).
    #[arg(long, env = "CSS_RECONCILE", conflicts_with = "demo")]
    pub reconcile: bool,
    /// How often to reconcile (with --reconcile); each run also compacts history.
    #[arg(long, env = "CSS_RECONCILE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,
    /// How often to checkpoint and compact history when not reconciling (see
    /// CSS_HISTORY_RETENTION); 0s: never (another process compacts, as the
    /// stack's reconcile function does for its Fargate watch tier).
    #[arg(long, env = "CSS_COMPACTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub compaction_interval: Duration,
    /// Take each request's caller (who owns the subscriptions it creates)
    /// from this header, and refuse subscriptions to requests without it.
    /// Only behind a proxy that sets it and is the only way in: the stack's
    /// API Gateway VPC link sets it to the IAM caller it authorized. Off by
    /// default (one local principal).
    #[arg(long, env = "CSS_CALLER_HEADER")]
    pub caller_header: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}: {1}")]
    Setting(&'static str, String),
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Clients to use instead of those built from the environment.
#[derive(Default)]
pub struct AwsOverrides {
    /// AWS settings for every client not given here (else the environment's).
    pub sdk: Option<aws_config::SdkConfig>,
    pub sqs: Option<aws_sdk_sqs::Client>,
    pub dynamodb: Option<aws_sdk_dynamodb::Client>,
    pub ecs: Option<(Arc<dyn EcsSource>, RunScope)>,
}

/// A running server; stop it with `shutdown`.
pub struct Server {
    addr: SocketAddr,
    store: Arc<dyn StateStore>,
    stop: watch::Sender<bool>,
    http: JoinHandle<Result<(), ServerError>>,
    background: Vec<JoinHandle<()>>,
}

impl Server {
    /// Connects the store, binds, and starts serving and the background tasks.
    /// `aws` overrides the clients built from the environment (tests).
    pub async fn start(mut cfg: ServerConfig, aws: AwsOverrides) -> Result<Server, ServerError> {
        cfg.store = cfg.store.normalized();
        // Every client is made before the listener binds or anything is
        // spawned, so a failure here leaves nothing running.
        let parts = setup::build(
            &cfg.store,
            Wants {
                store: StoreChoice::EtcdOrEmbedded,
                cursors: CursorChoice::DynamoOrEmbedded,
                // Reconcile reads ECS, and so does the ingest: service
                // events are answered by describing the service.
                ecs: if cfg.reconcile || cfg.queue_url.is_some() {
                    EcsChoice::InAccount
                } else {
                    EcsChoice::None
                },
            },
            Overrides {
                sdk: aws.sdk,
                dynamodb: aws.dynamodb,
                ecs: aws.ecs,
            },
        )
        .await?;
        let sqs = match (cfg.queue_url.clone(), aws.sqs) {
            (None, _) => None,
            (Some(url), Some(c)) => Some((url, c)),
            (Some(url), None) => Some((url, aws_sdk_sqs::Client::new(parts.sdk().await))),
        };
        let backups = match cfg.store.backup_bucket {
            Some(_) => cfg.store.backups(parts.sdk().await),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let store = parts.store.clone();
        let ecs = parts
            .ecs
            .as_ref()
            .and_then(|e| Some((e.source.clone(), e.scope()?)));
        let reconcile = (parts.ecs.as_ref())
            .and_then(|e| Some((e.reconcile.clone(), e.scope()?)))
            .filter(|_| cfg.reconcile);

        let (stop, stopped) = watch::channel(false);
        let metrics = prometheus();
        let caller_header = (cfg.caller_header.as_deref())
            .map(|h| axum::http::HeaderName::try_from(h.trim().to_ascii_lowercase()))
            .transpose()
            .map_err(|e| ServerError::Setting("CSS_CALLER_HEADER", e.to_string()))?;
        let identity = match caller_header {
            Some(_) => Identity::Iam,
            None => Identity::Local,
        };
        let mut app = api::router(AppState::new(&parts, identity, &cfg.store)).route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { text }
            }),
        );
        if let Some(header) = caller_header {
            app = app.layer(axum::middleware::from_fn(move |req, next| {
                caller_from(header.clone(), req, next)
            }));
        }
        let mut rx = stopped.clone();
        let http = tokio::spawn(async move {
            // Answers are small and latency is the point: no Nagle delay.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
                .map_err(ServerError::Serve)
        });
        let mut background = Vec::new();
        if let Some((source, scope)) = reconcile {
            background.push(tokio::spawn(reconciler(
                store.clone(),
                source,
                scope,
                (cfg.store.history_retention, cfg.store.reconcile_settings()),
                cfg.reconcile_interval,
                stopped.clone(),
            )));
        } else if !cfg.compaction_interval.is_zero() {
            background.push(tokio::spawn(compactor(
                store.clone(),
                cfg.store.history_retention,
                cfg.compaction_interval,
                stopped.clone(),
            )));
        }
        background.push(tokio::spawn(maintenance(
            store.clone(),
            backups,
            cfg.store.etcd_quota_bytes,
            stopped.clone(),
        )));
        if let Some((url, client)) = sqs {
            background.push(tokio::spawn(sqs::poll(
                client,
                url,
                store.clone(),
                ecs.clone(),
                stopped.clone(),
            )));
        }
        if cfg.demo {
            background.push(tokio::spawn(demo::run(
                store.clone(),
                cfg.demo_interval,
                stopped.clone(),
            )));
        }
        tracing::info!(%addr, demo = cfg.demo, queue = cfg.queue_url.as_deref().unwrap_or("-"), "serving");
        Ok(Server {
            addr,
            store,
            stop,
            http,
            background,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }

    /// Stops accepting, finishes in-flight requests, stops background tasks.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        for b in self.background {
            let _ = b.await;
        }
        match self.http.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }
}

/// The caller the trusted proxy names in `header` (see CSS_CALLER_HEADER).
async fn caller_from(
    header: axum::http::HeaderName,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let caller = (req.headers().get(&header))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    if let Some(c) = caller {
        req.extensions_mut().insert(api::Caller(c));
    }
    next.run(req).await
}

/// How often histogram samples are folded into their summaries.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder (one per process: servers started
/// again in one process, as tests do, share it).
fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "no metrics recorder"))
                .ok();
            css::metrics::describe();
            // Histograms keep every sample until upkeep drains them: without
            // it a process nobody scrapes grows by 8 bytes per request.
            if let Some(h) = handle.clone() {
                let upkeep = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        h.run_upkeep();
                    });
                if let Err(e) = upkeep {
                    tracing::warn!(error = %e, "no metrics upkeep");
                }
            }
            handle
        })
        .clone()
}

async fn compactor(
    store: Arc<dyn StateStore>,
    retention: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // The first checkpoint comes one interval after start: right at start there
    // is no history worth a checkpoint, and a write then would race callers'
    // first writes.
    let every = every.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match css::compaction::checkpoint_and_compact(store.as_ref(), retention, SystemTime::now())
            .await
        {
            Ok(report) if report.compacted_to.is_some() => {
                tracing::info!(?report, "compacted history")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction failed; will retry"),
        }
    }
}

/// Every minute: the etcd members' health (metrics, one member
/// defragmented when due) and a store backup when due (CSS_BACKUP_BUCKET).
async fn maintenance(
    store: Arc<dyn StateStore>,
    backups: Option<css::backup::Backups>,
    quota_bytes: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = css::health::tick(store.as_ref(), quota_bytes).await {
            tracing::warn!(error = %e, "member health not read");
        }
        if let Some(b) = &backups {
            // Logged and counted inside; the next tick tries again.
            let _ = b.tick(store.as_ref()).await;
        }
    }
}

/// Reconcile passes, one at a time: each run goes to its pass's end (no
/// deadline here; a pass a previous process left half-done is finished).
async fn reconciler(
    store: Arc<dyn StateStore>,
    source: Arc<dyn EcsSource>,
    scope: RunScope,
    (retention, settings): (Duration, Settings),
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    // One run at a time: a slow run delays the next instead of overlapping it.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let run = Reconciler {
            store: store.as_ref(),
            source: source.as_ref(),
            scope: scope.clone(),
            retention,
            settings,
        };
        let summary = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            s = run.run() => s,
        };
        summary.record(store.as_ref()).await;
    }
}
