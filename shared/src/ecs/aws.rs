//! The ECS calls the service makes, over aws-sdk-ecs (adaptive retries;
//! AWS_ENDPOINT_URL and friends honoured by the SDK's config loader).
//!
//! Described entities are taken from the raw JSON answer (ECS's own shape,
//! camelCase, every field kept) rather than rebuilt from the SDK's types;
//! only epoch-second timestamps (`...At` fields) become ISO-8601 strings, as
//! in event details.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::types::DesiredStatus;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::value::RawValue;
use serde_json::Value;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use super::{service_name, EcsSource, Page, Retry, ServicesAnswer, SourceError, LIST_PAGE};

/// Counts every request attempt (retries included).
#[derive(Debug, Clone, Default)]
struct CountAttempts(Arc<AtomicU64>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Keeps the raw body of one operation's answer.
#[derive(Debug, Clone, Default)]
struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only successful answers count as ECS's word.
        if !ctx.response().status().is_success() {
            return Ok(());
        }
        if let Some(bytes) = ctx.response().body().bytes() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// When the last attempt of one operation was sent (the answer was
/// produced after it; a retried call counts from its last attempt).
#[derive(Debug, Clone, Default)]
struct SentAt(Arc<Mutex<Option<chrono::DateTime<chrono::Utc>>>>);

impl Intercept for SentAt {
    fn name(&self) -> &'static str {
        "SentAt"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(chrono::Utc::now());
        Ok(())
    }
}

impl CaptureBody {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub struct AwsEcs {
    client: aws_sdk_ecs::Client,
    calls: Arc<AtomicU64>,
}

pub(crate) fn err(operation: &'static str, e: impl std::error::Error) -> SourceError {
    SourceError::new(
        operation,
        aws_sdk_ecs::error::DisplayErrorContext(e).to_string(),
    )
}

/// ECS's error codes for a refused rate.
const THROTTLING: [&str; 3] = [
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// An SDK error, classified: throttled, transient (network, timeout, 5xx)
/// or refused.
fn sdk_err<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retry = match &e {
        SdkError::ServiceError(s) if THROTTLING.contains(&s.err().code().unwrap_or("")) => {
            Retry::Throttled
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Transient
        }
        SdkError::ServiceError(s) if s.raw().status().is_server_error() => Retry::Transient,
        _ => Retry::No,
    };
    SourceError {
        retry,
        ..err(operation, e)
    }
}

/// Epoch-second numbers in `...At` fields become ISO-8601 strings, recursively.
fn iso_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k.ends_with("At") {
                    if let Some(secs) = val.as_f64() {
                        let millis = (secs * 1000.0).round() as i64;
                        if let Some(t) = chrono::DateTime::from_timestamp_millis(millis) {
                            *val = Value::String(
                                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            );
                            continue;
                        }
                    }
                }
                iso_timestamps(val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iso_timestamps),
        _ => {}
    }
}

/// The entities under `field` of a Describe* answer, in event-detail shape
/// (which, unlike DescribeContainerInstances, always names the cluster).
fn entities(
    body: Vec<u8>,
    field: &str,
    cluster: &str,
    operation: &'static str,
) -> Result<Vec<Box<RawValue>>, SourceError> {
    // An HTTP 200 whose body is not ECS's answer shape fails here, loudly.
    let mut v: Value = serde_json::from_slice(&body).map_err(|e| err(operation, e))?;
    let Some(Value::Array(items)) = v.get_mut(field).map(Value::take) else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .map(|mut item| {
            iso_timestamps(&mut item);
            if let Value::Object(map) = &mut item {
                map.entry("clusterArn")
                    .or_insert_with(|| Value::String(cluster.to_string()));
            }
            serde_json::value::to_raw_value(&item).map_err(|e| err(operation, e))
        })
        .collect()
}

/// Sends a Describe* call (`send` adds the body-capturing interceptor it is
/// given) and returns the entities under `field` of its raw answer.
async fn describe<T, E, F, Fut>(
    operation: &'static str,
    field: &str,
    cluster: &str,
    send: F,
) -> Result<Vec<Box<RawValue>>, SourceError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnOnce(CaptureBody) -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let capture = CaptureBody::default();
    let res = send(capture.clone()).await;
    let body = raw_answer(res, &capture, operation)?;
    entities(body, field, cluster, operation)
}

/// The raw body of a successful answer. An answer the SDK's typed model
/// cannot read (a field ECS or an emulator types differently) is still
/// used: only the raw JSON is stored, so the model's view does not matter.
fn raw_answer<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    res: Result<T, SdkError<E, HttpResponse>>,
    capture: &CaptureBody,
    operation: &'static str,
) -> Result<Vec<u8>, SourceError> {
    match res {
        Ok(_) => capture
            .take()
            .ok_or_else(|| SourceError::new(operation, "no response body")),
        Err(SdkError::ResponseError(e)) => capture.take().ok_or_else(|| SourceError {
            retry: Retry::Transient,
            ..SourceError::new(operation, format!("unreadable response: {e:?}"))
        }),
        Err(e) => Err(sdk_err(operation, e)),
    }
}

/// A page from an SDK answer; an empty token means no next page.
fn page(arns: Option<Vec<String>>, next: Option<String>) -> Page {
    Page {
        arns: arns.unwrap_or_default(),
        next: next.filter(|t| !t.is_empty()),
    }
}

impl AwsEcs {
    /// With the SDK's adaptive retries (the ingest's describes).
    pub fn new(sdk: &aws_config::SdkConfig) -> AwsEcs {
        Self::with_retries(sdk, RetryConfig::adaptive().with_max_attempts(5))
    }

    /// One attempt per call: reconcile retries through its own call budget,
    /// so that every request ECS sees was paid for (`reconcile::budget`).
    pub fn single_attempt(sdk: &aws_config::SdkConfig) -> AwsEcs {
        Self::with_retries(sdk, RetryConfig::disabled())
    }

    fn with_retries(sdk: &aws_config::SdkConfig, retry: RetryConfig) -> AwsEcs {
        let calls = Arc::new(AtomicU64::new(0));
        let conf = aws_sdk_ecs::config::Builder::from(sdk)
            .retry_config(retry)
            .interceptor(CountAttempts(calls.clone()))
            .build();
        AwsEcs {
            client: aws_sdk_ecs::Client::from_conf(conf),
            calls,
        }
    }
}

#[async_trait]
impl EcsSource for AwsEcs {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError> {
        let call = self.client.list_clusters().max_results(LIST_PAGE as i32);
        let out = call.set_next_token(next.map(String::from)).send().await;
        let out = out.map_err(|e| sdk_err("ListClusters", e))?;
        Ok(page(out.cluster_arns, out.next_token))
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        let call = (self.client.list_container_instances().cluster(cluster))
            .max_results(LIST_PAGE as i32)
            .set_next_token(next.map(String::from));
        let out = call.send().await;
        let out = out.map_err(|e| sdk_err("ListContainerInstances", e))?;
        Ok(page(out.container_instance_arns, out.next_token))
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        let call = self
            .client
            .describe_container_instances()
            .cluster(cluster)
            .set_container_instances(Some(arns.to_vec()));
        let op = "DescribeContainerInstances";
        describe(op, "containerInstances", cluster, |capture| {
            call.customize().interceptor(capture).send()
        })
        .await
    }

    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        let call = (self.client.list_tasks().cluster(cluster))
            .desired_status(DesiredStatus::from(desired))
            .max_results(LIST_PAGE as i32)
            .set_next_token(next.map(String::from));
        let out = call.send().await.map_err(|e| sdk_err("ListTasks", e))?;
        Ok(page(out.task_arns, out.next_token))
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        let call = self
            .client
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns.to_vec()));
        describe("DescribeTasks", "tasks", cluster, |capture| {
            call.customize().interceptor(capture).send()
        })
        .await
    }

    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError> {
        let call = (self.client.list_services().cluster(cluster))
            .max_results(LIST_PAGE as i32)
            .set_next_token(next.map(String::from));
        let out = call.send().await.map_err(|e| sdk_err("ListServices", e))?;
        let mut page = page(out.service_arns, out.next_token);
        // Only this cluster's (a long-format ARN names its cluster; some
        // emulators match cluster names as substrings).
        let name = cluster.rsplit('/').next().unwrap_or(cluster);
        let ours = |a: &String| match a.split(':').nth(5).map(|r| r.split('/').count()) {
            Some(3) => a.split('/').nth(1) == Some(name),
            _ => true,
        };
        page.arns.retain(ours);
        Ok(page)
    }

    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        let op = "DescribeServices";
        let (capture, sent) = (CaptureBody::default(), SentAt::default());
        let res = (self.client.describe_services().cluster(cluster))
            .set_services(Some(names.to_vec()))
            .customize()
            .interceptor(capture.clone())
            .interceptor(sent.clone())
            .send()
            .await;
        let body = raw_answer(res, &capture, op)?;
        let sent_at = sent.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let v: Value = serde_json::from_slice(&body).map_err(|e| err(op, e))?;
        let (mut missing, mut failed) = (Vec::new(), Vec::new());
        for f in v["failures"].as_array().into_iter().flatten() {
            let arn = f["arn"].as_str().unwrap_or_default().to_string();
            match f["reason"].as_str() {
                Some("MISSING") => missing.push(service_name(&arn).to_string()),
                other => failed.push((arn, other.unwrap_or("unknown").to_string())),
            }
        }
        Ok(ServicesAnswer {
            services: entities(body, "services", cluster, op)?,
            missing,
            failed,
            sent_at: sent_at.unwrap_or_else(chrono::Utc::now),
        })
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The account of the running identity, for server mode (STS GetCallerIdentity).
pub async fn caller_account(sdk: &aws_config::SdkConfig) -> Result<String, SourceError> {
    let sts = aws_sdk_sts::Client::new(sdk);
    let id = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| err("GetCallerIdentity", e))?;
    id.account
        .ok_or_else(|| SourceError::new("GetCallerIdentity", "no account in the answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_iso_8601() {
        let mut v = serde_json::json!({"createdAt": 1764000000.5, "containers": [{"startedAt": 1764000001}], "name": "x", "count": 3});
        iso_timestamps(&mut v);
        assert_eq!(v["createdAt"], "2025-11-24T16:00:00.500Z");
        assert_eq!(v["containers"][0]["startedAt"], "2025-11-24T16:00:01.000Z");
        assert_eq!(v["count"], 3);
    }
}
