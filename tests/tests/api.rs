//! Black-box HTTP tests of the query API against server mode, on the embedded
//! store and on a real etcd; every answer is checked against openapi.yaml.

use std::collections::BTreeSet;

use css::ingest::apply_batch;
use css_tests::fixtures::*;
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const A: &str = ACCOUNT;
const B: &str = OTHER_ACCOUNT;

fn task(
    cluster: &str,
    account: &str,
    id: &str,
    status: &str,
    version: u64,
    patch: Value,
) -> String {
    let mut d = task_detail(cluster, account, id, status, version, true);
    if let (Some(obj), Some(p)) = (d.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            obj.insert(k.clone(), v.clone());
        }
    }
    task_event(&d)
}

/// prod@A: p0-p5 RUNNING, p6-p9 STOPPED; prod@B: q0-q2 RUNNING; dev@A: d0-d4 PENDING.
async fn seed(s: &TestServer) {
    let mut bodies = Vec::new();
    for n in 0..10 {
        let status = if n < 6 { "RUNNING" } else { "STOPPED" };
        let patch = json!({
            "launchType": (["EC2", "FARGATE", "EXTERNAL"])[n % 3],
            "group": if n < 4 { "service:web" } else { "service:api" },
            "startedBy": format!("starter-{}", n % 3),
            "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{A}:container-instance/prod/ci{}", n % 2),
        });
        bodies.push(task("prod", A, &format!("p{n}"), status, 1, patch));
    }
    for n in 0..3 {
        bodies.push(task("prod", B, &format!("q{n}"), "RUNNING", 1, json!({})));
    }
    for n in 0..5 {
        bodies.push(task("dev", A, &format!("d{n}"), "PENDING", 1, json!({})));
    }
    bodies.push(instance_event(&instance_detail(
        "prod", A, "ci0", "ACTIVE", 1,
    )));
    bodies.push(instance_event(&instance_detail(
        "prod", A, "ci1", "DRAINING", 1,
    )));
    bodies.push(instance_event(&instance_detail(
        "prod", B, "ci0", "ACTIVE", 1,
    )));
    let out = apply_batch(s.server.store().as_ref(), &messages(&bodies)).await;
    assert!(out.failures.is_empty());
}

fn ids(body: &Value) -> BTreeSet<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let e = &i["entity"];
            let arn = e["taskArn"]
                .as_str()
                .or(e["containerInstanceArn"].as_str())
                .unwrap_or_default();
            let account = arn.split(':').nth(4).unwrap_or_default();
            let id = arn.rsplit('/').next().unwrap_or_default();
            format!("{id}@{}", if account == A { "A" } else { "B" })
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn list_filters(s: &TestServer, api: &OpenApi) {
    seed(s).await;
    let cases: &[(&str, &[&str])] = &[
        ("/v1/tasks?cluster=prod&status=running", &["p0@A", "p1@A", "p2@A", "p3@A", "p4@A", "p5@A", "q0@B", "q1@B", "q2@B"]),
        (
            &*Box::leak(format!("/v1/tasks?cluster={}&status=RUNNING", cluster_arn(B, REGION, "prod")).into_boxed_str()),
            &["q0@B", "q1@B", "q2@B"],
        ),
        ("/v1/tasks?status=Pending", &["d0@A", "d1@A", "d2@A", "d3@A", "d4@A"]),
        ("/v1/tasks?cluster=prod&desiredStatus=stopped", &["p6@A", "p7@A", "p8@A", "p9@A"]),
        // Every launch type, in any case (the fixtures' other tasks are EC2).
        ("/v1/tasks?cluster=prod&status=RUNNING&launchType=fargate", &["p1@A", "p4@A"]),
        ("/v1/tasks?cluster=prod&launchType=EC2", &["p0@A", "p3@A", "p6@A", "p9@A", "q0@B", "q1@B", "q2@B"]),
        ("/v1/tasks?cluster=prod&status=RUNNING&launchType=ec2", &["p0@A", "p3@A", "q0@B", "q1@B", "q2@B"]),
        ("/v1/tasks?launchType=EXTERNAL", &["p2@A", "p5@A", "p8@A"]),
        ("/v1/tasks?cluster=prod&status=STOPPED&launchType=External", &["p8@A"]),
        ("/v1/tasks?group=service%3Aapi", &["p4@A", "p5@A", "p6@A", "p7@A", "p8@A", "p9@A"]),
        ("/v1/tasks?group=service%3Aweb&cluster=prod&status=RUNNING", &["p0@A", "p1@A", "p2@A", "p3@A", "q0@B", "q1@B", "q2@B"]),
        ("/v1/tasks?startedBy=starter-1&cluster=prod", &["p1@A", "p4@A", "p7@A"]),
        ("/v1/tasks?containerInstance=ci1&status=RUNNING", &["p1@A", "p3@A", "p5@A"]),
        (
            &*Box::leak(
                format!("/v1/tasks?containerInstance=arn:aws:ecs:{REGION}:{A}:container-instance/prod/ci0&status=STOPPED")
                    .into_boxed_str(),
            ),
            &["p6@A", "p8@A"],
        ),
        ("/v1/tasks?cluster=dev&status=RUNNING", &[]),
        ("/v1/tasks?cluster=nonexistent", &[]),
        ("/v1/instances?cluster=prod", &["ci0@A", "ci1@A", "ci0@B"]),
        ("/v1/instances?status=active", &["ci0@A", "ci0@B"]),
        ("/v1/instances?cluster=prod&status=DRAINING", &["ci1@A"]),
    ];
    for (path, want) in cases {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        api.check(
            if path.starts_with("/v1/tasks") {
                "TaskList"
            } else {
                "InstanceList"
            },
            &r.body,
        );
        assert_eq!(ids(&r.body), set(want), "{path}");
        assert!(r.body.get("nextToken").is_none(), "{path}");
    }
    let all = s.get("/v1/tasks").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 18);
    let ping = s.get("/v1/ping").await;
    api.check("Ping", &ping.body);
    assert_eq!(ping.body["revision"], all.body["revision"]);
}

async fn pagination_is_a_snapshot(s: &TestServer, api: &OpenApi) {
    let bodies: Vec<String> = (0..50)
        .map(|n| task("big", A, &format!("t{n:02}"), "RUNNING", 1, json!({})))
        .collect();
    apply_batch(s.server.store().as_ref(), &messages(&bodies)).await;
    let mut seen = Vec::new();
    let mut r = s.get("/v1/tasks?cluster=big&status=RUNNING&limit=7").await;
    let revision = r.body["revision"].clone();
    let mut pages = 0;
    loop {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        api.check("TaskList", &r.body);
        assert_eq!(
            r.body["revision"], revision,
            "every page at the first page's revision"
        );
        assert!(r.body["items"].as_array().unwrap().len() <= 7);
        seen.extend(ids(&r.body));
        pages += 1;
        if pages == 1 {
            // Writes between pages are not seen by this list.
            let more = vec![
                task("big", A, "t03", "STOPPED", 2, json!({})),
                task("big", A, "t49", "STOPPED", 2, json!({})),
                task("big", A, "t50", "RUNNING", 1, json!({})),
            ];
            apply_batch(s.server.store().as_ref(), &messages(&more)).await;
        }
        let Some(token) = r.body["nextToken"].as_str() else {
            break;
        };
        // A token is bound to its filters.
        let wrong = s
            .get(&format!("/v1/tasks?cluster=big&limit=7&nextToken={token}"))
            .await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
        assert_eq!(wrong.body["parameter"], "nextToken");
        r = s
            .get(&format!(
                "/v1/tasks?cluster=big&status=RUNNING&limit=7&nextToken={token}"
            ))
            .await;
    }
    assert_eq!(pages, 8);
    let expected: Vec<String> = (0..50).map(|n| format!("t{n:02}@A")).collect();
    assert_eq!(seen, expected);
    let now = s
        .get("/v1/tasks?cluster=big&status=RUNNING&limit=1000")
        .await;
    assert_eq!(now.body["items"].as_array().unwrap().len(), 49);

    // Once the snapshot is compacted, its token expires.
    let first = s.get("/v1/tasks?cluster=big&limit=10").await;
    let token = first.body["nextToken"].as_str().unwrap().to_string();
    apply_batch(
        s.server.store().as_ref(),
        &messages(&[task("big", A, "t00", "STOPPED", 9, json!({}))]),
    )
    .await;
    let store = s.server.store();
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    let gone = s
        .get(&format!("/v1/tasks?cluster=big&limit=10&nextToken={token}"))
        .await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.body);
    api.check("Expired", &gone.body);
}

async fn bad_requests_name_the_parameter(s: &TestServer, api: &OpenApi) {
    let cases: &[(&str, &str)] = &[
        ("/v1/tasks?bogus=1", "bogus"),
        ("/v1/tasks?status=RUNNING&status=STOPPED", "status"),
        ("/v1/tasks?status=ACTIVE", "status"),
        ("/v1/tasks?desiredStatus=nope", "desiredStatus"),
        (
            "/v1/tasks?cluster=arn:aws:ecs:us-east-1:12:cluster/x",
            "cluster",
        ),
        ("/v1/tasks?cluster=bad%20name", "cluster"),
        (
            "/v1/tasks?cluster=arn:aws:ecs:us-east-1:123456789012:task/x",
            "cluster",
        ),
        ("/v1/tasks?limit=0", "limit"),
        ("/v1/tasks?limit=1001", "limit"),
        ("/v1/tasks?limit=ten", "limit"),
        ("/v1/tasks?limit=-1", "limit"),
        ("/v1/tasks?nextToken=garbage", "nextToken"),
        (
            "/v1/tasks?nextToken=eyJyIjoxLCJrIjoiIiwiZiI6MX0",
            "nextToken",
        ),
        ("/v1/tasks?launchType=EC2%2F", "launchType"),
        (
            "/v1/tasks?containerInstance=arn:aws:ecs:us-east-1:123456789012:task/x",
            "containerInstance",
        ),
        ("/v1/tasks?startedBy=", "startedBy"),
        ("/v1/instances?status=RUNNING", "status"),
        ("/v1/instances?desiredStatus=RUNNING", "desiredStatus"),
        ("/v1/ping?x=1", "x"),
        ("/v1/tasks/prod/not%20an%20id", "taskArnOrId"),
        (
            "/v1/tasks/prod/arn:aws:ecs:us-east-1:123456789012:cluster/x",
            "taskArnOrId",
        ),
        ("/v1/tasks/bad%20cluster/abc", "cluster"),
        ("/v1/instances/prod/abc?limit=1", "limit"),
    ];
    for (path, param) in cases {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        api.check("Error", &r.body);
        assert_eq!(r.body["parameter"], *param, "{path}: {}", r.body);
        assert_eq!(r.body["code"], "InvalidParameter");
    }
    for path in [
        "/nope",
        "/v1",
        "/v1/tasks/prod",
        "/v1/taskss",
        "/v1/instances/prod/",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        api.check("Error", &r.body);
    }
    let r = s.request(reqwest::Method::POST, "/v1/tasks", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    api.check("Error", &r.body);
    let r = s.request(reqwest::Method::DELETE, "/v1/ping", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn describe_in_every_form(s: &TestServer, api: &OpenApi) {
    seed(s).await;
    let long = format!("arn:aws:ecs:{REGION}:{A}:task/prod/p1");
    let short = format!("arn:aws:ecs:{REGION}:{A}:task/p1");
    let carn = cluster_arn(A, REGION, "prod");
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    let paths = [
        "/v1/tasks/prod/p1".to_string(),
        format!("/v1/tasks/prod/{long}"),
        format!("/v1/tasks/prod/{short}"),
        format!("/v1/tasks/{carn}/p1"),
        format!("/v1/tasks/{carn}/{long}"),
        format!("/v1/tasks/{}/{}", enc(&carn), enc(&long)),
        format!("/v1/tasks/prod/{}", enc(&short)),
    ];
    for p in &paths {
        let r = s.get(p).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
        api.check("TaskItem", &r.body);
        assert_eq!(r.body["entity"]["taskArn"], long, "{p}");
        assert!(
            r.body["metadata"]["entityVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
    }
    // The other account's same-named cluster.
    let other = s
        .get(&format!("/v1/tasks/{}/q2", cluster_arn(B, REGION, "prod")))
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.body["entity"]["taskArn"]
        .as_str()
        .unwrap()
        .contains(B));
    let inst = s
        .get(&format!(
            "/v1/instances/prod/arn:aws:ecs:{REGION}:{A}:container-instance/prod/ci1"
        ))
        .await;
    assert_eq!(inst.status, StatusCode::OK);
    api.check("InstanceItem", &inst.body);
    assert_eq!(inst.body["entity"]["status"], "DRAINING");
    for missing in [
        "/v1/tasks/prod/nope".to_string(),
        "/v1/tasks/dev/p1".to_string(),
        format!("/v1/tasks/{}/p1", cluster_arn(B, REGION, "prod")),
        format!("/v1/tasks/dev/{long}"),
        "/v1/instances/prod/ci9".to_string(),
    ] {
        let r = s.get(&missing).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}");
        api.check("Error", &r.body);
    }
}

async fn pages_stay_under_five_megabytes(s: &TestServer, api: &OpenApi) {
    let pad = "x".repeat(120_000);
    let bodies: Vec<String> = (0..60)
        .map(|n| {
            task(
                "fat",
                A,
                &format!("f{n:02}"),
                "RUNNING",
                1,
                json!({"padding": pad}),
            )
        })
        .collect();
    for chunk in bodies.chunks(10) {
        assert!(apply_batch(s.server.store().as_ref(), &messages(chunk))
            .await
            .failures
            .is_empty());
    }
    let mut r = s.get("/v1/tasks?cluster=fat&limit=1000").await;
    let mut total = 0;
    let mut pages = 0;
    loop {
        api.check("TaskList", &r.body);
        assert!(r.body.to_string().len() <= 5_000_000);
        total += r.body["items"].as_array().unwrap().len();
        pages += 1;
        let Some(t) = r.body["nextToken"].as_str() else {
            break;
        };
        r = s
            .get(&format!("/v1/tasks?cluster=fat&limit=1000&nextToken={t}"))
            .await;
    }
    assert_eq!(total, 60);
    assert!(pages >= 2);
}

css_tests::on_both_stores!(
    list_filters,
    pagination_is_a_snapshot,
    bad_requests_name_the_parameter,
    describe_in_every_form,
    pages_stay_under_five_megabytes,
);

#[tokio::test]
async fn store_outage_is_a_503_with_retry_after() {
    let mut etcd = EtcdServer::start();
    let s = TestServer::start(Some(&etcd), &[]).await;
    seed(&s).await;
    etcd.stop();
    let api = OpenApi::load();
    for path in [
        "/v1/ping",
        "/v1/tasks?cluster=prod",
        "/v1/tasks/prod/p1",
        "/v1/instances",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(r.headers.get("retry-after").is_some(), "{path}");
        api.check("Error", &r.body);
    }
    etcd.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = s.get("/v1/tasks?cluster=prod").await;
        if r.status == StatusCode::OK {
            assert_eq!(r.body["items"].as_array().unwrap().len(), 13);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service recovers after etcd returns"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let api = OpenApi::load();
    let routed: BTreeSet<(String, String)> = css::api::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.doc.to_string()))
        .collect();
    assert_eq!(routed, api.operations());
}

/// Each route in ROUTES is answered by the router (not the 404 fallback).
#[tokio::test]
async fn every_listed_route_is_routed() {
    let s = TestServer::start(None, &[]).await;
    for css::api::Route { method, doc, .. } in css::api::ROUTES {
        let path = doc
            .replace("{cluster}", "c1")
            .replace("{taskArnOrId}", "t1")
            .replace("{instanceArnOrId}", "i1")
            .replace("{id}", "00000000000000000000000000000000");
        // Long polls answer at once.
        let path = if path.contains("/stream/") {
            format!("{path}?wait=0")
        } else {
            path
        };
        let r = s.request(method.parse().unwrap(), &path, None).await;
        assert_ne!(r.body["message"], "no such route", "{method} {path}");
    }
}
