//! Metrics as operators get them: the Lambda handlers' CloudWatch Embedded
//! Metric Format lines on stdout, checked against the EMF specification, and
//! server mode's `/metrics` read by a Prometheus text parser.
//!
//! The handlers print EMF on the process's stdout, so `emf_lines_from_the_
//! handlers` runs them in a child process (this test binary again, running
//! the ignored `emf_child`) and reads what it printed.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use axum::http::Request;
use css::model::Kind;
use css::store::{EmbeddedStore, StateStore};
use css_tests::fixtures::{
    entity, service_event, sqs_event, task_detail, task_event, ACCOUNT, REGION,
};
use css_tests::server::TestServer;
use serde_json::Value;
use tower::ServiceExt;

/// Runs the handlers of css-ingest, css-api, css-watch and css-reconcile
/// with the EMF exporter installed; their metrics go to stdout.
#[tokio::test]
#[ignore = "run by emf_lines_from_the_handlers in a child process"]
async fn emf_child() {
    css::metrics::install_emf("ClusterStateService", "css-test").expect("exporter");
    let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::new("/ecs-css/v1/"));
    let task = |id: &str, v: u64| task_event(&task_detail("web", ACCOUNT, id, "RUNNING", v, true));
    let bodies = vec![
        task("t1", 1),
        task("t2", 1),
        task("t1", 1), // a duplicate: stale
        "{not json".to_string(),
        service_event("ECS Deployment State Change", ACCOUNT, REGION, "web", "api"),
    ];
    let out = css::lambda::handle_sqs(store.as_ref(), sqs_event(&bodies))
        .await
        .expect("handler");
    assert_eq!(out.batch_item_failures.len(), 1);

    let app = css::lambda::service(css::api::router(css::api::AppState::local(
        store.clone(),
        Arc::new(css::cursor::EmbeddedCursorStore::new()),
    )));
    for uri in [
        "/v1/tasks?cluster=web",
        "/v1/stream/tasks?since=1&wait=0",
        "/v1/tasks?status=bogus",
    ] {
        let req = Request::get(uri)
            .body(lambda_http::Body::Empty)
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("answer");
        assert!(resp.status().as_u16() < 500, "{uri}");
    }
    let e = entity(
        Kind::Task,
        &task_detail("web", ACCOUNT, "t1", "RUNNING", 1, true),
    );
    assert!(store.get(&e.key, None).await.expect("read").is_some());

    // css-reconcile: a run that only deleted; its other drift counters are
    // written as zeros, so the alarm's sum has its datapoint.
    let mut summary = css::reconcile::Summary::default();
    summary.total.deleted = 3;
    // Its calls through the budget, and the pass it completed.
    summary.calls.by_operation = [
        ("ListClusters".to_string(), 1),
        ("ListTasks".to_string(), 4),
    ]
    .into();
    summary.calls.throttles = 2;
    summary.pass.clusters = 7;
    summary.pass.clusters_done = 7;
    summary.pass.complete = true;
    // A member account's pass in the same run: its figures count too.
    let mut member = css::reconcile::Summary::default();
    member.total.inserted = 2;
    member.total.deleted = 1;
    member.calls.by_operation = [("ListTasks".to_string(), 3)].into();
    member.calls.throttles = 1;
    summary.members.push(css::reconcile::MemberRun {
        account: "111111111111".into(),
        region: "eu-west-1".into(),
        summary: member,
    });
    summary.record(store.as_ref()).await;
    css::metrics::flush();
}

/// Metric name -> (unit, values) of one document.
type Metrics = BTreeMap<String, (String, Vec<f64>)>;
/// Dimension name -> value.
type Dimensions = BTreeMap<String, String>;
/// Metric name -> every (dimensions, unit, values) it was seen with.
type Seen = BTreeMap<String, Vec<(Dimensions, String, Vec<f64>)>>;

const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One EMF document against the specification: the `_aws` metadata, its
/// directives, every dimension and metric it names present at the root with
/// a value of the right kind. Answers metric name -> (unit, values) and the
/// dimensions.
fn check_emf(doc: &Value) -> (Metrics, Dimensions) {
    let aws = &doc["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "Timestamp in ms: {doc}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    let (mut metrics, mut dims) = (BTreeMap::new(), BTreeMap::new());
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert!(
            !ns.is_empty() && ns.len() <= 255 && !ns.starts_with("AWS/"),
            "{ns}"
        );
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30);
            for name in set {
                let name = name.as_str().expect("dimension names are strings");
                let value = doc[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {name} has no string value: {doc}"));
                dims.insert(name.to_string(), value.to_string());
            }
        }
        let defs = d["Metrics"].as_array().expect("Metrics");
        assert!(!defs.is_empty() && defs.len() <= 100);
        for m in defs {
            let name = m["Name"].as_str().expect("Name");
            let unit = m["Unit"].as_str().unwrap_or("None");
            assert!(UNITS.contains(&unit), "{name}: unit {unit}");
            let values: Vec<f64> = match &doc[name] {
                Value::Number(n) => vec![n.as_f64().expect("number")],
                Value::Array(a) => a.iter().map(|v| v.as_f64().expect("numbers")).collect(),
                other => panic!("metric {name} has no value ({other}) in {doc}"),
            };
            assert!(!values.is_empty() && values.len() <= 100, "{name}");
            metrics.insert(name.to_string(), (unit.to_string(), values));
        }
    }
    (metrics, dims)
}

#[test]
fn emf_lines_from_the_handlers() {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "emf_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = stdout
        .lines()
        // libtest's "test emf_child ... " may precede the first line.
        .filter_map(|l| l.find("{\"_aws\"").map(|at| &l[at..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!docs.is_empty(), "no EMF line in:\n{stdout}");
    let mut seen: Seen = BTreeMap::new();
    for doc in &docs {
        let (metrics, dims) = check_emf(doc);
        assert_eq!(
            dims.get("Function").map(String::as_str),
            Some("css-test"),
            "{doc}"
        );
        for (name, (unit, values)) in metrics {
            seen.entry(name)
                .or_default()
                .push((dims.clone(), unit, values));
        }
    }
    let value = |name: &str, dim: Option<(&str, &str)>| -> f64 {
        let found = seen
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing; have {:?}", seen.keys()));
        found
            .iter()
            .filter(|(d, _, _)| dim.is_none_or(|(k, v)| d.get(k).map(String::as_str) == Some(v)))
            .flat_map(|(_, _, v)| v.iter().copied())
            .sum()
    };
    // css-ingest: 5 records: 2 applied, 1 stale, 1 malformed, 1 ignored.
    assert_eq!(value("ingest_records", Some(("outcome", "applied"))), 2.0);
    assert_eq!(value("ingest_records", Some(("outcome", "stale"))), 1.0);
    assert_eq!(value("ingest_records", Some(("outcome", "malformed"))), 1.0);
    assert_eq!(value("ingest_records", Some(("outcome", "ignored"))), 1.0);
    assert_eq!(seen["ingest_lag_max_seconds"][0].1, "Seconds");
    assert!(
        value("ingest_lag_max_seconds", None) > 0.0,
        "the fixtures' events are from the past"
    );
    assert_eq!(seen["ingest_invocation_seconds"][0].1, "Seconds");
    // Outcomes that did not happen are written as zeros.
    assert_eq!(value("ingest_records", Some(("outcome", "failed"))), 0.0);
    assert!(seen["ingest_records"]
        .iter()
        .any(|(d, _, _)| d.get("outcome").map(String::as_str) == Some("describe_failed")));
    // css-reconcile: every drift counter written, zeros too; a member's
    // pass counts with the home one.
    for (change, n) in [("inserted", 2.0), ("updated", 0.0), ("deleted", 4.0)] {
        assert!(
            seen["reconcile_drift"]
                .iter()
                .any(|(d, _, _)| d.get("change").map(String::as_str) == Some(change)),
            "reconcile_drift{{change={change}}} not written"
        );
        assert_eq!(
            value("reconcile_drift", Some(("change", change))),
            n,
            "{change}"
        );
    }
    // Calls by operation, throttles, the pass's progress.
    assert_eq!(
        value("reconcile_calls", Some(("operation", "ListTasks"))),
        7.0
    );
    assert_eq!(
        value("reconcile_calls", Some(("operation", "ListClusters"))),
        1.0
    );
    assert_eq!(value("reconcile_throttles", None), 3.0);
    assert_eq!(value("reconcile_pass_clusters", None), 7.0);
    assert_eq!(value("reconcile_pass_clusters_done", None), 7.0);
    assert_eq!(value("reconcile_passes_completed", None), 1.0);
    // css-api and css-watch: requests by route and status class, latency.
    assert_eq!(value("http_requests", Some(("status", "2xx"))), 2.0);
    assert_eq!(value("http_requests", Some(("status", "4xx"))), 1.0);
    assert!(seen.contains_key("http_request_seconds"));
    assert_eq!(
        value("watch_answers", Some(("cause", "timeout")))
            + value("watch_answers", Some(("cause", "events"))),
        1.0
    );
    println!(
        "{}",
        docs.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_serves_prometheus_text() {
    let srv = TestServer::start(None, &["--demo", "--demo-interval", "200ms"]).await;
    for path in [
        "/v1/tasks?cluster=web",
        "/v1/stream/tasks?wait=0",
        "/v1/tasks?status=bogus",
        "/v1/tasks/web/nosuchtask",
        "/v1/nosuchroute",
    ] {
        srv.get(path).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let text = srv
        .http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(text.status(), 200);
    let text = text.text().await.expect("text");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let sum = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert!(
        sum("http_requests", Some(("status", "2xx"))) >= 2.0,
        "{text}"
    );
    assert!(
        sum("http_requests", Some(("status", "4xx"))) >= 1.0,
        "{text}"
    );
    // Requests by route as the router names it; no route: "unmatched"
    // (read off the text: the parser splits a label value holding braces).
    for line in [
        r#"http_requests{route="/v1/tasks",status="2xx"} 1"#,
        r#"http_requests{route="/v1/tasks",status="4xx"} 1"#,
        r#"http_requests{route="/v1/stream/tasks",status="2xx"} 1"#,
        r#"http_requests{route="/v1/tasks/{*rest}",status="4xx"} 1"#,
        r#"http_requests{route="unmatched",status="4xx"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    assert!(
        sum("ingest_records", Some(("outcome", "applied"))) > 0.0,
        "the demo ingests: {text}"
    );
    assert!(sum("watch_answers", None) >= 1.0, "{text}");
    assert!(
        scrape.docs.contains_key("ingest_records"),
        "described: {:?}",
        scrape.docs.keys()
    );
    srv.server.shutdown().await.expect("shutdown");
}
