//! css-bench: measures the service next to a baseline taken in the same run
//! (raw etcd calls with the same client), against a local etcd it starts.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// css-server's allocator (so that memory-child holds what server mode
/// holds), counting the heap in use for `passes`.
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

mod alloc;
mod cluster;
mod cssctl;
mod ingest;
mod lambda;
mod list;
mod list_costs;
mod memory;
mod metrics;
mod passes;
mod reconcile;
mod records;
mod services;
mod sqs;
mod store;
mod watch;
mod watchers;

#[derive(Parser)]
#[command(about = "Benchmarks of cluster-state-service against raw etcd, in one run")]
struct Cli {
    /// Repetitions per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Events per second applied by the ingest handler vs raw etcd puts.
    Ingest {
        /// Events in the workload.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
    },
    /// The ingest with 10% service events (described from moto) vs task events only.
    Services {
        /// Events in each workload.
        #[arg(long, default_value_t = 5_000)]
        events: usize,
    },
    /// Server mode polling moto's SQS vs moto alone handing out the messages.
    Sqs {
        /// Events in the workload (moto slows down as its queue grows).
        #[arg(long, default_value_t = 500)]
        events: usize,
    },
    /// Latency of a filtered list through the router vs a raw etcd range read.
    List,
    /// One reconcile run over a moto fleet: API calls and wall time.
    Reconcile,
    /// Reconcile passes on a simulated ECS at scale (simulated time): calls
    /// per pass, time at the budget, invocations, peak memory, drift fixed.
    Passes {
        /// Task counts, in 100 clusters each.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        tasks: Vec<usize>,
        /// The call budget (ReconcileCallsPerSecond).
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Calls per second the account's own tooling takes from ECS's bucket.
        #[arg(long, default_value_t = 0.0)]
        background: f64,
    },
    /// Latency from a write to the long poll carrying it, 1 and 100 watchers.
    Watch,
    /// Many long-poll watchers on one server-mode process (css-server beside
    /// css-bench) while writes arrive at a fixed rate.
    Watchers {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sizes: Vec<usize>,
        /// Writes per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds of writes per size.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Another css-server binary to measure in the same run (a baseline).
        #[arg(long)]
        against: Option<std::path::PathBuf>,
        /// The CPUs the server may use (a `taskset -c` list, e.g. `0`): with
        /// css-bench itself under `taskset -c 1`, the server has a core of
        /// its own, as on a host of its own.
        #[arg(long)]
        server_cpus: Option<String>,
    },
    /// The store on 3 members with mutual TLS vs 1 plaintext member: ingest,
    /// filtered list, and a leader kill under a writer.
    Cluster,
    /// Lambda bootstrap binaries: cold start, size, ingest peak RSS.
    Lambda,
    /// The cost of metrics (EMF) on ingest: events/s with and without.
    Metrics,
    /// One metrics measurement in a fresh process.
    #[command(hide = true)]
    MetricsChild {
        #[arg(long)]
        emf: bool,
    },
    /// Server mode memory: 100,000 tasks in the embedded store; the etcd
    /// store's record cache holding 20,000.
    Memory,
    /// cssctl's peak RSS printing 100,000 tasks as JSON.
    Cssctl,
    /// The record format: bytes per entity and per change, list, ingest,
    /// legacy vs compact; a small quota predicted and filled.
    Store {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 256)]
        quota_mb: u64,
    },
    /// Trains the record format's zstd dictionary (shared/src/store/record.dict).
    TrainDict {
        #[arg(long, default_value = "shared/src/store/record.dict")]
        out: std::path::PathBuf,
    },
    /// Everything, in order.
    All,
    /// The cold-start baseline: one request to the runtime API, then exit.
    #[command(hide = true)]
    RuntimeProbe,
    /// Loads tasks into an embedded store and prints RSS figures.
    #[command(hide = true)]
    MemoryChild {
        #[arg(long)]
        tasks: usize,
    },
    /// Lists `tasks` tasks from an etcd through the record cache and prints RSS figures.
    #[command(hide = true)]
    CacheChild {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        tasks: usize,
    },
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

pub async fn timed<F: std::future::Future<Output = ()>>(f: F) -> Duration {
    let t = Instant::now();
    f.await;
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.what {
        What::RuntimeProbe => return lambda::probe(),
        What::MemoryChild { tasks } => return memory::child(tasks).await,
        What::CacheChild { endpoint, tasks } => return memory::cache_child(&endpoint, tasks).await,
        What::MetricsChild { emf } => return metrics::child(emf).await,
        What::Metrics => return metrics::run(cli.runs).await,
        What::TrainDict { out } => return records::train(&out),
        What::Store { tasks, quota_mb } => return store::run(tasks, quota_mb, cli.runs).await,
        What::Passes {
            tasks,
            rate,
            background,
        } => {
            // Its own runtime (paused time), on a thread of its own.
            let run = std::thread::spawn(move || passes::run(&tasks, rate, background));
            return run.join().expect("the passes benchmark");
        }
        _ => {}
    }
    let etcd = css_tests::EtcdServer::start();
    match cli.what {
        What::Ingest { events } => ingest::run(&etcd, events, cli.runs.max(1)).await,
        What::Sqs { events } => sqs::run(&etcd, events, cli.runs.max(1)).await,
        What::Services { events } => services::run(&etcd, events, cli.runs.max(1)).await,
        What::List => list::run(&etcd, cli.runs).await,
        What::Reconcile => reconcile::run(&etcd, cli.runs).await,
        What::Watch => watch::run(&etcd, cli.runs).await,
        What::Watchers {
            sizes,
            rate,
            secs,
            against,
            server_cpus,
        } => watchers::run(&etcd, &sizes, rate, secs, against, server_cpus).await,
        What::Lambda => lambda::run(&etcd, cli.runs).await,
        What::Cluster => cluster::run(cli.runs).await,
        What::Memory => memory::run(&etcd, cli.runs).await,
        What::Cssctl => cssctl::run(cli.runs).await,
        What::RuntimeProbe
        | What::MemoryChild { .. }
        | What::CacheChild { .. }
        | What::Metrics
        | What::MetricsChild { .. }
        | What::TrainDict { .. }
        | What::Store { .. }
        | What::Passes { .. } => {}
        What::All => {
            ingest::run(&etcd, 10_000, cli.runs.max(1)).await;
            println!();
            sqs::run(&etcd, 500, cli.runs.clamp(1, 3)).await;
            println!();
            services::run(&etcd, 5_000, cli.runs.clamp(1, 3)).await;
            println!();
            list::run(&etcd, cli.runs).await;
            println!();
            reconcile::run(&etcd, cli.runs).await;
            println!();
            let sizes = [10_000, 100_000, 1_000_000];
            let passes = std::thread::spawn(move || passes::run(&sizes, 5.0, 0.0));
            passes.join().expect("the passes benchmark");
            println!();
            watch::run(&etcd, cli.runs).await;
            println!();
            cluster::run(cli.runs).await;
            println!();
            lambda::run(&etcd, cli.runs).await;
            println!();
            memory::run(&etcd, cli.runs).await;
            println!();
            metrics::run(cli.runs).await;
            println!();
            cssctl::run(cli.runs).await;
            println!();
            store::run(100_000, 256, cli.runs.clamp(1, 3)).await;
        }
    }
}
