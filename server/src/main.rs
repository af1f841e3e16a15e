//! css-server: cluster-state-service in one process.
#![forbid(unsafe_code)]

use clap::Parser;
use css_server::{AwsOverrides, Server, ServerConfig};

/// A long-running process holding many mid-sized records: mimalloc's
/// size-segregated pages keep fragmentation (and so RSS) near the live data,
/// where glibc's heap kept 10-60 MB of scattered free space per 100,000 tasks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        healthcheck().await;
    }
    let cfg = match ServerConfig::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line naming the setting, not a usage screen.
            eprintln!("css-server: {}", css::config::first_line(&e.to_string()));
            std::process::exit(2);
        }
    };
    css::config::init_logging(false, cfg.store.log_level.as_deref());
    let server = match Server::start(cfg, AwsOverrides::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("css-server: {e}");
            std::process::exit(1);
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Err(e) = server.shutdown().await {
        eprintln!("css-server: {e}");
        std::process::exit(1);
    }
}

/// The container's health check: exits 0 when this host's server answers
/// /v1/ping at CSS_BIND.
async fn healthcheck() -> ! {
    let bind = std::env::var("CSS_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let outcome = match bind.parse() {
        Ok(addr) => css_server::health::check(addr).await,
        Err(e) => Err(format!("CSS_BIND {bind:?}: {e}")),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("css-server healthcheck: {e}");
            std::process::exit(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
