//! What a process builds from its settings before serving: the state store,
//! the cursor store, the ECS source and the account and region it covers.
//! The four Lambda mains and server mode all call `build`, so each part is
//! wired one way everywhere.

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::{self, ConfigError, StoreArgs};
use crate::cursor::{CursorStore, DynamoCursorStore, EmbeddedCursorStore};
use crate::ecs::aws::{caller_account, AwsEcs};
use crate::ecs::members::AwsMembers;
use crate::ecs::{EcsSource, RunScope, SourceError};
use crate::store::{SharedWatchStore, StateStore};

/// Which state store a process may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreChoice {
    /// etcd, required (the Lambdas).
    #[default]
    Etcd,
    /// etcd when CSS_ETCD_ENDPOINTS is set, else the embedded store; on etcd
    /// long polls share one watch per kind (server mode: one process serves
    /// many watchers).
    EtcdOrEmbedded,
}

/// Which cursor store, if any, a process serves subscriptions from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorChoice {
    /// No subscriptions here (css-api, css-ingest, css-reconcile).
    #[default]
    None,
    /// DynamoDB, CSS_CURSOR_TABLE required (css-watch).
    Dynamo,
    /// DynamoDB when CSS_CURSOR_TABLE is set, else in memory (server mode).
    DynamoOrEmbedded,
}

/// Whether a process reads the ECS API, and how it learns its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcsChoice {
    #[default]
    None,
    /// The source and the region; the account comes with each invocation
    /// (css-reconcile reads it from the invoked function's ARN).
    InRegion,
    /// The source, the region and the account of the running identity (STS).
    InAccount,
}

/// What a process asks `build` for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wants {
    pub store: StoreChoice,
    pub cursors: CursorChoice,
    pub ecs: EcsChoice,
}

/// Clients to use instead of those built from the environment (tests, and
/// server mode's callers pointing at local AWS endpoints).
#[derive(Default)]
pub struct Overrides {
    /// The AWS settings of every client made here (else the environment's).
    pub sdk: Option<aws_config::SdkConfig>,
    pub dynamodb: Option<aws_sdk_dynamodb::Client>,
    pub ecs: Option<(Arc<dyn EcsSource>, RunScope)>,
}

/// The ECS API and the account and region it is read for.
#[derive(Clone)]
pub struct Ecs {
    /// With the SDK's retries (the ingest's describes).
    pub source: Arc<dyn EcsSource>,
    /// One attempt per request: reconcile retries through its call budget.
    pub reconcile: Arc<dyn EcsSource>,
    pub region: String,
    /// Known with `EcsChoice::InAccount` (or an override).
    pub account: Option<String>,
}

impl Ecs {
    /// The scope of a reconcile run, with the account known here.
    pub fn scope(&self) -> Option<RunScope> {
        Some(RunScope {
            account: self.account.clone()?,
            region: self.region.clone(),
        })
    }
}

/// Everything `build` made.
pub struct Parts {
    pub store: Arc<dyn StateStore>,
    pub cursors: Option<Arc<dyn CursorStore>>,
    pub ecs: Option<Ecs>,
    sdk: Arc<OnceCell<aws_config::SdkConfig>>,
}

impl Parts {
    /// The AWS SDK configuration, loaded from the environment on first use
    /// and shared by every client made from it.
    pub async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk.get_or_init(config::aws_sdk_config).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("AWS: {0}")]
    Aws(#[from] SourceError),
}

/// Builds the parts `wants` names from `args`. Every AWS client is made
/// before this returns, so a missing setting fails here, not at first use.
pub async fn build(
    args: &StoreArgs,
    wants: Wants,
    overrides: Overrides,
) -> Result<Parts, SetupError> {
    let sdk = Arc::new(OnceCell::new());
    if let Some(given) = overrides.sdk {
        let _ = sdk.set(given);
    }
    let load_sdk = || sdk.get_or_init(config::aws_sdk_config);
    // Secrets are read with the same AWS settings as every other client.
    let secrets_sdk = match args.reads_secrets() {
        true => Some(load_sdk().await),
        false => None,
    };
    let store: Arc<dyn StateStore> = match wants.store {
        StoreChoice::Etcd => args.connect_etcd_with(secrets_sdk).await?,
        StoreChoice::EtcdOrEmbedded if args.etcd_endpoints.is_empty() => {
            args.connect_any(secrets_sdk).await?
        }
        StoreChoice::EtcdOrEmbedded => {
            Arc::new(SharedWatchStore::new(args.connect_any(secrets_sdk).await?))
        }
    };
    let table = match wants.cursors {
        CursorChoice::None => None,
        CursorChoice::Dynamo => Some(Some(
            args.cursor_table
                .clone()
                .ok_or(ConfigError::Missing("CSS_CURSOR_TABLE"))?,
        )),
        CursorChoice::DynamoOrEmbedded => Some(args.cursor_table.clone()),
    };
    let cursors: Option<Arc<dyn CursorStore>> = match table {
        None => None,
        Some(None) => Some(Arc::new(EmbeddedCursorStore::new())),
        Some(Some(table)) => {
            let client = match overrides.dynamodb {
                Some(c) => c,
                None => aws_sdk_dynamodb::Client::new(load_sdk().await),
            };
            Some(Arc::new(DynamoCursorStore::new(client, table)))
        }
    };
    let ecs = match (wants.ecs, overrides.ecs) {
        (EcsChoice::None, _) => None,
        (_, Some((source, scope))) => Some(Ecs {
            reconcile: source.clone(),
            source,
            region: scope.region,
            account: Some(scope.account),
        }),
        (choice, None) => {
            let sdk = load_sdk().await;
            let region = config::region(sdk)?;
            let account = match choice {
                EcsChoice::InAccount => Some(caller_account(sdk).await?),
                _ => None,
            };
            Some(Ecs {
                source: Arc::new(AwsEcs::new(sdk)),
                reconcile: Arc::new(AwsEcs::single_attempt(sdk)),
                region,
                account,
            })
        }
    };
    Ok(Parts {
        store,
        cursors,
        ecs,
        sdk,
    })
}

/// The member accounts' and Regions' ECS API (`CSS_MEMBER_*`, README
/// "Organizations"); None when only the home account and Region are read.
/// `single_attempt`: reconcile's clients (its budget retries).
pub fn members(
    sdk: &aws_config::SdkConfig,
    single_attempt: bool,
) -> Result<Option<Arc<AwsMembers>>, SetupError> {
    let settings = config::MemberArgs::from_env()?.settings()?;
    let wanted = settings.any() || settings.purge_former;
    Ok(wanted.then(|| Arc::new(AwsMembers::new(settings, sdk.clone(), single_attempt))))
}

/// A Lambda's start: settings from the environment, JSON logs, metrics as
/// CloudWatch EMF (namespace CSS_METRICS_NAMESPACE, the function's name as
/// dimension), then `build`.
pub async fn lambda(wants: Wants) -> Result<(StoreArgs, Parts), SetupError> {
    let mut args = StoreArgs::from_env().map_err(ConfigError::Environment)?;
    config::init_logging(true, args.log_level.as_deref());
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok();
    if let Some(mb) = memory.and_then(|m| m.parse::<u32>().ok()) {
        if let Some(asked) = args.fit_record_cache(mb) {
            tracing::warn!(
                asked,
                kept = args.record_cache_mb,
                memory_mb = mb,
                "CSS_RECORD_CACHE_MB is above half the function's memory: lowered"
            );
        }
    }
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    crate::metrics::install_emf(&args.metrics_namespace, &function).map_err(|reason| {
        ConfigError::Invalid {
            name: "CSS_METRICS_NAMESPACE",
            reason,
        }
    })?;
    let parts = build(&args, wants, Overrides::default()).await?;
    Ok((args, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{store_args, Ecs, ACCOUNT, REGION};

    fn refusal(r: Result<Parts, SetupError>) -> String {
        match r {
            Ok(_) => panic!("built without a required setting"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn the_lambdas_need_etcd_and_css_watch_its_cursor_table() {
        let none = Overrides::default;
        let lambda = build(&store_args(&[]), Wants::default(), none()).await;
        assert_eq!(refusal(lambda), "CSS_ETCD_ENDPOINTS is required");
        let watch = Wants {
            store: StoreChoice::EtcdOrEmbedded,
            cursors: CursorChoice::Dynamo,
            ..Wants::default()
        };
        let watch = build(&store_args(&[]), watch, none()).await;
        assert_eq!(refusal(watch), "CSS_CURSOR_TABLE is required");
    }

    #[tokio::test]
    async fn server_mode_without_settings_runs_on_embedded_parts() {
        let wants = Wants {
            store: StoreChoice::EtcdOrEmbedded,
            cursors: CursorChoice::DynamoOrEmbedded,
            ecs: EcsChoice::None,
        };
        let parts = build(&store_args(&[]), wants, Overrides::default()).await;
        let parts = parts.unwrap_or_else(|e| panic!("{e}"));
        assert!(parts.cursors.is_some() && parts.ecs.is_none());
        let current = parts.store.current_revision().await;
        assert_eq!(
            current.unwrap_or_else(|e| panic!("{e}")),
            1,
            "a new embedded store"
        );
    }

    #[tokio::test]
    async fn an_ecs_override_brings_its_scope() {
        let scope = RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        };
        let overrides = Overrides {
            ecs: Some((Arc::new(Ecs::default()), scope)),
            ..Overrides::default()
        };
        let wants = Wants {
            store: StoreChoice::EtcdOrEmbedded,
            ecs: EcsChoice::InAccount,
            ..Wants::default()
        };
        let parts = build(&store_args(&[]), wants, overrides).await;
        let ecs = parts.unwrap_or_else(|e| panic!("{e}")).ecs;
        let scope = ecs.and_then(|e| e.scope()).map(|s| (s.account, s.region));
        assert_eq!(scope, Some((ACCOUNT.to_string(), REGION.to_string())));
    }
}
