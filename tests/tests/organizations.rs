//! One view of every account and Region (README "Organizations"), on moto's
//! server mode with several accounts (moto keeps resources per account:
//! they are made with credentials from sts.assume_role into each) and a
//! real etcd: the central account and two member accounts in two Regions;
//! events of all feed one store; reconcile corrects drift in each member
//! through its role and purges a removed cluster; a member whose role STS
//! refuses is reported while the others converge; a member's service
//! events are described in that member; `account` and `region` filter
//! every list, stream and subscription.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use css::api::{self, AppState, Identity};
use css::cursor::EmbeddedCursorStore;
use css::ecs::members::{Accounts, AwsMembers, MemberSettings, Members};
use css::ingest::Describer;
use css::model::{ClusterId, Kind};
use css::reconcile::aws::AwsEcs;
use css::reconcile::{run_with_members, Reconciler, RunScope, Summary};
use css::store::{ClusterScope, ListRequest, StateStore};
use css_tests::fixtures::{instance_event, messages, service_event, task_event};
use css_tests::moto::{sdk_config_at, MotoServer};
use css_tests::throttle::ThrottlingProxy;
use css_tests::EtcdServer;
use serde_json::{json, Value};
use tower::ServiceExt;

const CENTRAL: &str = "123456789012";
const A: &str = "111111111111";
const B: &str = "222222222222";
/// A member whose read role STS refuses (missing, or not trusting us).
const GONE: &str = "333333333333";
/// Not a member: its events reach the store, its services are not described.
const STRANGER: &str = "444444444444";
const HOME: &str = "us-east-1";
const OTHER: &str = "eu-west-1";

fn home() -> RunScope {
    RunScope {
        account: CENTRAL.into(),
        region: HOME.into(),
    }
}

fn settings(purge_former: bool) -> MemberSettings {
    MemberSettings {
        accounts: Accounts::Listed(vec![A.into(), B.into(), GONE.into()]),
        regions: vec![HOME.into(), OTHER.into()],
        role_name: "css-member-read".into(),
        external_id: Some("css-test".into()),
        purge_former,
    }
}

/// What one seed made, by ARN.
#[derive(Default)]
struct Made {
    tasks: Vec<String>,
    instances: Vec<String>,
    services: Vec<String>,
}

fn seed(moto: &MotoServer, account: &str, region: &str, clusters: Value, made: &mut Made) {
    let out = moto.seed_ecs(&json!({"account": account, "region": region, "clusters": clusters}));
    for (_, c) in out["clusters"].as_object().expect("clusters") {
        let arns = |k: &str| -> Vec<String> {
            (c[k].as_array().into_iter().flatten())
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        made.tasks.extend(arns("running"));
        made.tasks.extend(arns("stopped"));
        made.instances.extend(arns("instances"));
        made.services.extend(arns("services"));
    }
}

/// (account, region) of an ECS ARN.
fn place(arn: &str) -> (String, String) {
    let f: Vec<&str> = arn.split(':').collect();
    (f[4].to_string(), f[3].to_string())
}

fn cluster_of(arn: &str) -> String {
    let (account, region) = place(arn);
    let name = arn.split('/').nth(1).expect("a cluster in the ARN");
    format!("arn:aws:ecs:{region}:{account}:cluster/{name}")
}

fn task_body(arn: &str) -> String {
    task_event(&json!({
        "taskArn": arn,
        "clusterArn": cluster_of(arn),
        "lastStatus": "RUNNING",
        "desiredStatus": "RUNNING",
        "version": 1
    }))
}

async fn arns(store: &dyn StateStore, kind: Kind) -> BTreeSet<String> {
    let page = store
        .list(&ListRequest {
            kind,
            cluster: ClusterScope::All,
            status: None,
            start_after: None,
            limit: 10_000,
            revision: None,
        })
        .await
        .expect("list");
    page.records
        .iter()
        .map(|r| {
            let e: Value =
                serde_json::from_str(r.meta().expect("meta").entity.get()).expect("json");
            let field = match kind {
                Kind::Task => "taskArn",
                Kind::Instance => "containerInstanceArn",
                Kind::Service => "serviceArn",
            };
            e[field].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

async fn reconcile(store: &dyn StateStore, home_source: &AwsEcs, members: &dyn Members) -> Summary {
    let r = Reconciler {
        store,
        source: home_source,
        scope: home(),
        retention: std::time::Duration::from_secs(3600),
        settings: css::reconcile::Settings::default(),
    };
    run_with_members(&r, members, None).await
}

async fn get(app: &axum::Router, uri: &str) -> (u16, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn item_arn(item: &Value) -> String {
    let e = &item["entity"];
    ["taskArn", "containerInstanceArn", "serviceArn"]
        .iter()
        .find_map(|k| e[*k].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_store_for_every_member_account_and_region() {
    let moto = MotoServer::start();
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let start = store.current_revision().await.expect("revision");

    // The fleet: same-named clusters in three accounts, two Regions.
    let mut central = Made::default();
    seed(
        &moto,
        CENTRAL,
        HOME,
        json!({"shop": {"instances": 1, "running": 2}}),
        &mut central,
    );
    let mut a = Made::default();
    seed(
        &moto,
        A,
        HOME,
        json!({"shop": {"instances": 1, "running": 2, "stopped": 1, "services": ["api"]}}),
        &mut a,
    );
    seed(
        &moto,
        A,
        OTHER,
        json!({"shop": {"instances": 1, "running": 1}}),
        &mut a,
    );
    let mut b = Made::default();
    seed(
        &moto,
        B,
        OTHER,
        json!({"batch": {"instances": 1, "running": 2}}),
        &mut b,
    );
    for arn in a.tasks.iter().chain(&b.tasks) {
        let (account, region) = place(arn);
        assert!(
            (account == A || account == B) && (region == HOME || region == OTHER),
            "{arn}"
        );
    }

    // STS refuses GONE's role; everything else reaches moto.
    let proxy = ThrottlingProxy::refusing_roles_in(&moto.endpoint(), GONE).await;
    let sdk = sdk_config_at(&proxy.endpoint);
    let ingest_members = AwsMembers::new(settings(false), sdk.clone(), false);
    let home_ingest = AwsEcs::new(&sdk);

    // 1. Events of every account feed one store: all tasks but the first of
    // each member (drift for reconcile), a stale task ECS never had, a
    // stranger's task, a member's service event and a stranger's.
    let stale = format!("arn:aws:ecs:{OTHER}:{B}:task/batch/0123456789abcdef0123456789abcdef");
    // A cluster the member removed (ECS no longer lists it).
    let retired = format!("arn:aws:ecs:{OTHER}:{B}:task/retired/00000000000000000000000000000001");
    let stranger_task =
        format!("arn:aws:ecs:{HOME}:{STRANGER}:task/shop/fedcba9876543210fedcba9876543210");
    let mut bodies: Vec<String> = Vec::new();
    bodies.extend(central.tasks.iter().map(|t| task_body(t)));
    bodies.extend(a.tasks.iter().skip(1).map(|t| task_body(t)));
    bodies.extend(b.tasks.iter().skip(1).map(|t| task_body(t)));
    bodies.push(task_body(&stale));
    bodies.push(task_body(&retired));
    // A task of the member whose role is refused: kept, never deleted blind.
    let gone_task = format!("arn:aws:ecs:{HOME}:{GONE}:task/shop/00000000000000000000000000000002");
    bodies.push(task_body(&gone_task));
    bodies.push(task_body(&stranger_task));
    bodies.push(instance_event(&json!({
        "containerInstanceArn": a.instances[0],
        "clusterArn": cluster_of(&a.instances[0]),
        "status": "ACTIVE",
        "version": 1
    })));
    bodies.push(service_event("ECS Service Action", A, HOME, "shop", "api"));
    bodies.push(service_event(
        "ECS Service Action",
        STRANGER,
        HOME,
        "shop",
        "web",
    ));
    let describer = Describer {
        ecs: &home_ingest,
        scope: &home(),
        members: Some(&ingest_members),
    };
    let out = css::ingest::apply(store.as_ref(), Some(describer), &messages(&bodies)).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(
        out.stats.foreign, 1,
        "the stranger's service event: acknowledged only"
    );
    // The member's service, described in the member (through its role).
    let services = arns(store.as_ref(), Kind::Service).await;
    assert_eq!(
        services,
        a.services.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(a.services[0].contains(&format!(":{A}:")));

    // A service event of GONE: its describe fails (retried), not dropped.
    let gone = css::ingest::apply(
        store.as_ref(),
        Some(describer),
        &messages(&[service_event(
            "ECS Service Action",
            GONE,
            OTHER,
            "shop",
            "web",
        )]),
    )
    .await;
    assert_eq!(gone.failures.len(), 1, "{:?}", gone.stats);

    // 2. Reconcile: every pair a pass of its own through its role.
    let home_source = AwsEcs::single_attempt(&sdk);
    let members = AwsMembers::new(settings(false), sdk.clone(), true);
    let sum = reconcile(store.as_ref(), &home_source, &members).await;
    let pairs: BTreeSet<(String, String)> = sum
        .members
        .iter()
        .map(|m| (m.account.clone(), m.region.clone()))
        .collect();
    let want: BTreeSet<(String, String)> = [
        (CENTRAL, OTHER),
        (A, HOME),
        (A, OTHER),
        (B, HOME),
        (B, OTHER),
        (GONE, HOME),
        (GONE, OTHER),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(pairs, want);
    for m in &sum.members {
        if m.account == GONE {
            assert!(!m.summary.errors.is_empty(), "GONE/{}", m.region);
            assert!(!m.summary.pass.complete);
        } else {
            assert!(
                m.summary.errors.is_empty(),
                "{}/{}: {:?}",
                m.account,
                m.region,
                m.summary.errors
            );
            assert!(m.summary.pass.complete, "{}/{}", m.account, m.region);
        }
    }
    // The run's errors name GONE's pairs, and only them.
    assert!(!sum.errors.is_empty());
    for e in &sum.errors {
        assert!(
            e.cluster.starts_with(GONE) || e.cluster.contains(&format!(":{GONE}:")),
            "{e}"
        );
    }
    // Drift corrected in each member; the stale task deleted, the removed
    // cluster purged; the stranger's task kept (no purge configured).
    let tasks = arns(store.as_ref(), Kind::Task).await;
    let mut expected: BTreeSet<String> = central
        .tasks
        .iter()
        .chain(&a.tasks)
        .chain(&b.tasks)
        .cloned()
        .collect();
    expected.insert(stranger_task.clone());
    expected.insert(gone_task.clone());
    assert_eq!(tasks, expected);
    let instances = arns(store.as_ref(), Kind::Instance).await;
    let all_instances: BTreeSet<String> = central
        .instances
        .iter()
        .chain(&a.instances)
        .chain(&b.instances)
        .cloned()
        .collect();
    assert_eq!(instances, all_instances);
    // Status, per account and Region.
    let status = css::status::status(store.as_ref()).await;
    css_tests::openapi::OpenApi::load().check("Status", &status);
    let accounts = status["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 7, "{accounts:?}");
    for s in accounts {
        let gone = s["account"] == GONE;
        assert_eq!(
            s["errors"].as_array().map(Vec::is_empty),
            Some(!gone),
            "{s}"
        );
        assert_eq!(s["lastCompletedPass"].is_string(), !gone, "{s}");
        assert!(
            s["calls"].as_u64().is_some() && s["throttles"].as_u64().is_some(),
            "{s}"
        );
        assert!(s["lastRun"].is_string());
    }
    let a_home = accounts
        .iter()
        .find(|s| s["account"] == A && s["region"] == HOME)
        .expect("A");
    assert!(a_home["calls"].as_u64() >= Some(4), "{a_home}");

    // 3. Purging former members turned on: the stranger's records go.
    let members = AwsMembers::new(settings(true), sdk.clone(), true);
    let sum = reconcile(store.as_ref(), &home_source, &members).await;
    assert_eq!(sum.purged, Some(1), "the stranger's task");
    let tasks = arns(store.as_ref(), Kind::Task).await;
    expected.remove(&stranger_task);
    assert_eq!(tasks, expected);
    // A member whose role is refused is a member still: never purged.
    assert!(tasks.contains(&gone_task));
    // With former members purged, the ingest stores no stranger's event
    // (acknowledged and counted), and still a member's.
    let purging = AwsMembers::new(settings(true), sdk.clone(), false);
    let describer = Describer {
        ecs: &home_ingest,
        scope: &home(),
        members: Some(&purging),
    };
    let again = [task_body(&stranger_task), task_body(&a.tasks[0])];
    let out = css::ingest::apply(store.as_ref(), Some(describer), &messages(&again)).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(out.stats.foreign, 1);
    assert_eq!(arns(store.as_ref(), Kind::Task).await, expected);

    // 4. `account` and `region` on every list, stream and subscription.
    let app = api::router(AppState {
        store: store.clone(),
        cursors: Some(Arc::new(EmbeddedCursorStore::new())),
        identity: Identity::Local,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
        subscriptions_per_owner: 100,
        etcd_quota_bytes: 4 << 30,
        answers: Default::default(),
    });
    let now: BTreeSet<String> = [
        arns(store.as_ref(), Kind::Task).await,
        arns(store.as_ref(), Kind::Instance).await,
        arns(store.as_ref(), Kind::Service).await,
    ]
    .into_iter()
    .flatten()
    .collect();
    let accounts = [None, Some(CENTRAL), Some(A), Some(B), Some(GONE)];
    let regions = [None, Some(HOME), Some(OTHER)];
    let mut nonempty = 0;
    for kind in ["tasks", "instances", "services"] {
        for account in accounts {
            for region in regions {
                let mut q = vec!["limit=1000".to_string()];
                q.extend(account.map(|a| format!("account={a}")));
                q.extend(region.map(|r| format!("region={r}")));
                let (code, page) = get(&app, &format!("/v1/{kind}?{}", q.join("&"))).await;
                assert_eq!(code, 200, "{kind} {q:?}: {page}");
                let got: BTreeSet<String> = (page["items"].as_array().into_iter().flatten())
                    .map(item_arn)
                    .collect();
                let marker = match kind {
                    "tasks" => ":task/",
                    "instances" => ":container-instance/",
                    _ => ":service/",
                };
                let want: BTreeSet<String> = now
                    .iter()
                    .filter(|arn| arn.contains(marker))
                    .filter(|arn| {
                        let (acc, reg) = place(arn);
                        account.is_none_or(|a| a == acc) && region.is_none_or(|r| r == reg)
                    })
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{kind} {q:?}");
                nonempty += usize::from(!got.is_empty());
            }
        }
        for (bad, name) in [("account=12345", "account"), ("region=Europe", "region")] {
            let (code, body) = get(&app, &format!("/v1/{kind}?{bad}")).await;
            assert_eq!(code, 400, "{kind} {bad}");
            assert!(
                body["message"].as_str().unwrap_or_default().contains(name),
                "{body}"
            );
        }
    }
    assert!(
        nonempty >= 15,
        "the filters were checked on data: {nonempty}"
    );
    // A stream of one member's Region: its changes alone, since the start.
    for (account, region) in [(A, OTHER), (B, OTHER), (CENTRAL, HOME)] {
        let (code, batch) = get(
            &app,
            &format!("/v1/stream/tasks?since={start}&wait=0&limit=1000&account={account}&region={region}"),
        )
        .await;
        assert_eq!(code, 200, "{batch}");
        let events = batch["events"].as_array().expect("events");
        assert!(!events.is_empty(), "{account}/{region}");
        for e in events {
            assert_eq!(
                place(&item_arn(&e["item"])),
                (account.to_string(), region.to_string())
            );
        }
    }
    // A subscription filtered by account and Region.
    let created = app
        .clone()
        .oneshot(
            Request::post("/v1/subscriptions")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"resource": "tasks", "since": start.to_string(),
                           "filters": {"account": A, "region": HOME}})
                    .to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(created.status().as_u16(), 201);
    let sub: Value = serde_json::from_slice(
        &axum::body::to_bytes(created.into_body(), usize::MAX)
            .await
            .expect("body"),
    )
    .expect("json");
    let id = sub["id"].as_str().expect("id");
    let (code, batch) = get(
        &app,
        &format!("/v1/subscriptions/{id}/events?wait=0&limit=1000"),
    )
    .await;
    assert_eq!(code, 200, "{batch}");
    let seen: BTreeSet<String> = (batch["events"].as_array().into_iter().flatten())
        .filter(|e| e["type"] == "PUT")
        .map(|e| item_arn(&e["item"]))
        .collect();
    let a_home: BTreeSet<String> = a
        .tasks
        .iter()
        .filter(|t| place(t).1 == HOME)
        .cloned()
        .collect();
    assert_eq!(seen, a_home);
    // Same-named clusters never collide: "shop" exists in three accounts.
    let shop: Vec<ClusterId> = [CENTRAL, A]
        .iter()
        .map(|acc| {
            ClusterId::from_arn(&format!("arn:aws:ecs:{HOME}:{acc}:cluster/shop")).expect("arn")
        })
        .collect();
    assert_ne!(shop[0], shop[1]);
}

/// `ORGANIZATION`: the members are the organization's active accounts,
/// listed (Organizations ListAccounts) each time they are asked for.
#[tokio::test]
async fn the_organizations_accounts_are_its_members() {
    let moto = MotoServer::start();
    let settings = MemberSettings {
        accounts: Accounts::Organization,
        ..settings(false)
    };
    let members = AwsMembers::new(settings, moto.sdk_config(), true);
    // No organization yet: an error naming the call, never an empty list.
    let e = members.accounts().await.expect_err("no organization");
    assert_eq!(e.operation, "ListAccounts");
    moto.aws(&[
        "organizations",
        "create-organization",
        "--feature-set",
        "ALL",
    ]);
    let mut created = BTreeSet::new();
    for name in ["payments", "search"] {
        let out = moto.aws(&[
            "organizations",
            "create-account",
            "--email",
            &format!("{name}@example.com"),
            "--account-name",
            name,
        ]);
        let id = out["CreateAccountStatus"]["AccountId"]
            .as_str()
            .expect("account id")
            .to_string();
        created.insert(id);
    }
    let listed: BTreeSet<String> = members
        .accounts()
        .await
        .expect("accounts")
        .into_iter()
        .collect();
    assert!(
        listed.contains(CENTRAL),
        "the management account: {listed:?}"
    );
    assert!(created.is_subset(&listed), "{created:?} in {listed:?}");
    assert_eq!(listed.len(), created.len() + 1);
    // Every listed account is read, in every member Region.
    let pairs = members
        .settings()
        .pairs(&home(), &listed.iter().cloned().collect::<Vec<_>>());
    assert_eq!(pairs.len(), listed.len() * 2 - 1);
}
