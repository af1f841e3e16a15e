//! cssctl's command line: commands, flags and their values.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::types::Filters;

#[derive(Parser, Debug)]
#[command(
    name = "cssctl",
    version,
    about = "Query and watch cluster-state-service: ECS tasks, container instances and services",
    after_help = "Exit codes: 0 ok, 2 usage, 3 endpoint unreachable or unavailable, 4 not authorized (IAM), \
5 invalid request, 6 not found, 7 server error, 8 AWS credentials, 9 unexpected answer."
)]
pub struct Cli {
    /// The service: server mode, or an API Gateway stage URL (signed with SigV4).
    #[arg(
        long,
        env = "CSS_ENDPOINT",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub endpoint: String,
    /// When to sign requests with SigV4 (auto: for execute-api URLs).
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub sign: SignArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SignArg {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List (or watch) tasks.
    Tasks(ListArgs),
    /// List (or watch) container instances.
    Instances(ListArgs),
    /// List (or watch) services and their rollouts.
    Services(ListArgs),
    /// Show one task, container instance or service as JSON.
    Describe {
        #[arg(value_enum)]
        kind: DescribeKind,
        /// Cluster name or ARN.
        cluster: String,
        /// ARN or bare id (a service: ARN or name).
        id: String,
    },
    /// Server-side watch cursors.
    #[command(subcommand)]
    Subscriptions(SubCommand),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DescribeKind {
    Task,
    Instance,
    Service,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Tables without their header line (for scripts).
    #[arg(long)]
    pub no_headers: bool,
    /// After listing, print one line per change (ADDED/MODIFIED/DELETED) until interrupted.
    #[arg(short, long)]
    pub watch: bool,
    /// Items per page requested from the service (1-1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
}

#[derive(Subcommand, Debug)]
pub enum SubCommand {
    /// Create a subscription; prints it as JSON.
    Create {
        #[arg(long, value_enum)]
        resource: ResourceArg,
        #[command(flatten)]
        filters: Box<Filters>,
        /// Start after this revision (default: now).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Show a subscription.
    Get { id: String },
    /// Commit --ack (if given), then print the changes after the cursor as JSON.
    Events {
        id: String,
        /// Revision to commit as the cursor first.
        #[arg(long)]
        ack: Option<i64>,
        /// Seconds to wait for a change (0-25).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=25))]
        wait: u64,
    },
    /// Delete a subscription.
    Delete { id: String },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ResourceArg {
    Tasks,
    Instances,
    Services,
}

/// A filter flag the command's kind does not take, and the flags it does:
/// refused here rather than sent for the service to refuse.
pub(super) fn foreign_flag(cli: &Cli) -> Option<(&'static str, &'static str, &'static str)> {
    let (kind, filters) = match &cli.command {
        Command::Tasks(a) => (ResourceArg::Tasks, &a.filters),
        Command::Instances(a) => (ResourceArg::Instances, &a.filters),
        Command::Services(a) => (ResourceArg::Services, &a.filters),
        Command::Subscriptions(SubCommand::Create {
            resource, filters, ..
        }) => (*resource, filters.as_ref()),
        _ => return None,
    };
    let f = filters;
    // (flag, given, taken by tasks, instances, services)
    let flags = [
        (
            "--desired-status",
            f.desired_status.is_some(),
            [true, false, false],
        ),
        ("--started-by", f.started_by.is_some(), [true, false, false]),
        ("--group", f.group.is_some(), [true, false, false]),
        (
            "--launch-type",
            f.launch_type.is_some(),
            [true, false, true],
        ),
        (
            "--container-instance",
            f.container_instance.is_some(),
            [true, false, false],
        ),
        ("--service", f.service.is_some(), [true, false, false]),
        (
            "--scheduling-strategy",
            f.scheduling_strategy.is_some(),
            [false, false, true],
        ),
        (
            "--rollout-state",
            f.rollout_state.is_some(),
            [false, false, true],
        ),
    ];
    let (i, name, takes) = match kind {
        ResourceArg::Tasks => (0, "tasks", "--cluster, --status, --desired-status, --started-by, --group, --launch-type, --container-instance, --service, --account and --region"),
        ResourceArg::Instances => (1, "container instances", "--cluster, --status, --account and --region"),
        ResourceArg::Services => (2, "services", "--cluster, --status, --launch-type, --scheduling-strategy, --rollout-state, --account and --region"),
    };
    (flags.into_iter())
        .find(|(_, given, taken)| *given && !taken[i])
        .map(|(flag, _, _)| (flag, name, takes))
}
