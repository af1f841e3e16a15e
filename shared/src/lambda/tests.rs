//! The Lambda edge: API Gateway requests as the router takes them, SQS
//! batches as item failures, scheduled events as runs for their account.

use aws_lambda_events::event::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
    ApiGatewayV2httpRequestContext,
};
use aws_lambda_events::event::sqs::SqsEvent;
use axum::http::Request;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde_json::json;

use super::http::edge;
use super::{handle_scheduled_event, handle_sqs, strip_stage, IngestError, ReconcileError};
use crate::api::Caller;
use crate::model::Kind;
use crate::store::StateStore;
use crate::testing::{embedded, entity, instance, task, task_event, Ecs};

fn request(path: &str, stage: &str, caller: Option<&str>) -> Request<()> {
    let mut ctx = ApiGatewayV2httpRequestContext::default();
    ctx.stage = Some(stage.into());
    if let Some(arn) = caller {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.into());
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        ctx.authorizer = Some(authorizer);
    }
    let req = Request::builder().uri(path).body(());
    let req = req.unwrap_or_else(|e| panic!("{e}"));
    req.with_request_context(RequestContext::ApiGatewayV2(ctx))
}

#[test]
fn a_named_stage_is_stripped_and_default_or_lookalike_paths_are_not() {
    for (path, stage, routed) in [
        (
            "/prod/v1/tasks?status=RUNNING",
            "prod",
            "/v1/tasks?status=RUNNING",
        ),
        ("/prod", "prod", "/"),
        ("/v1/tasks", "$default", "/v1/tasks"),
        ("/production/v1/tasks", "prod", "/production/v1/tasks"),
        ("/v1/tasks", "prod", "/v1/tasks"),
    ] {
        let req = strip_stage(request(path, stage, None));
        assert_eq!(req.uri().to_string(), routed, "{path} on stage {stage}");
    }
}

#[test]
fn the_iam_caller_is_attached_only_when_api_gateway_names_one() {
    let arn = "arn:aws:sts::111122223333:assumed-role/ops/alice";
    let req = edge(request("/v1/ping", "$default", Some(arn)));
    assert_eq!(req.extensions().get::<Caller>(), Some(&Caller(arn.into())));
    let req = edge(request("/v1/ping", "$default", None));
    assert_eq!(req.extensions().get::<Caller>(), None);
}

fn sqs(records: serde_json::Value) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn only_records_not_applied_come_back_as_batch_item_failures() {
    let s = embedded();
    let t = task("web", "t1", "RUNNING", 1);
    let event = sqs(json!([
        {"messageId": "good", "body": task_event(&t)},
        {"messageId": "bad", "body": "{not json"},
    ]));
    let response = handle_sqs(s.as_ref(), event).await;
    let response = response.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<&str> = (response.batch_item_failures.iter())
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["bad"]);
    let stored = s.get(&entity(Kind::Task, &t).key, None).await;
    assert!(stored.unwrap_or_else(|e| panic!("{e}")).is_some());
}

#[tokio::test]
async fn a_failed_record_without_a_message_id_fails_the_whole_batch() {
    let s = embedded();
    let response = handle_sqs(s.as_ref(), sqs(json!([{"body": "{not json"}]))).await;
    assert!(matches!(
        response,
        Err(IngestError::NoMessageId { index: 0, .. })
    ));
}

fn setup() -> crate::lambda::ReconcileSetup {
    crate::lambda::ReconcileSetup {
        members: None,
        retention: std::time::Duration::from_secs(3600),
        settings: crate::reconcile::Settings::default(),
        backups: None,
        etcd_quota_bytes: 4 << 30,
    }
}

#[tokio::test]
async fn a_scheduled_run_covers_the_account_of_its_function_arn() {
    let s = embedded();
    let ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![]);
    let arn = "arn:aws:lambda:eu-west-1:111122223333:function:css-reconcile";
    let event = json!({"id": "e1", "detail-type": "Scheduled Event"});
    let run = |arn: &'static str| {
        let (s, ecs, event) = (s.clone(), &ecs, event.clone());
        async move {
            handle_scheduled_event(s.as_ref(), ecs, &event, arn, "eu-west-1", &setup(), None).await
        }
    };
    let summary = run(arn).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (summary["clusters"].as_u64(), summary["inserted"].as_u64()),
        (Some(1), Some(1))
    );
    let refused = run("arn:aws:lambda:eu-west-1:function:no-account").await;
    assert!(matches!(refused, Err(ReconcileError::Invoke(e)) if e.operation == "Invoke"));
}

#[tokio::test]
async fn a_run_with_errors_fails_the_invocation_after_writing_what_it_could() {
    let s = embedded();
    let t = task("web", "t1", "RUNNING", 1);
    let mut ecs = Ecs::default().with(
        "web",
        vec![t.clone()],
        vec![instance("web", "i1", "ACTIVE", 1)],
    );
    ecs.failing = vec!["DescribeContainerInstances"];
    let arn = "arn:aws:lambda:eu-west-1:111122223333:function:css-reconcile";
    let event = json!({"id": "e1"});
    let out =
        handle_scheduled_event(s.as_ref(), &ecs, &event, arn, "eu-west-1", &setup(), None).await;
    match out {
        Err(ReconcileError::RunErrors {
            count,
            first,
            summary,
        }) => {
            assert_eq!(count, 1);
            assert!(first.contains("DescribeContainerInstances"), "{first}");
            assert_eq!(summary["inserted"], 1, "{summary}");
        }
        other => panic!("a run with errors must fail: {other:?}"),
    }
    let stored = s.get(&entity(Kind::Task, &t).key, None).await;
    assert!(
        stored.unwrap_or_else(|e| panic!("{e}")).is_some(),
        "what could be written was"
    );
}
