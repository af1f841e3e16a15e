use super::*;
use crate::model::ClusterId;
use crate::store::{encode_record, Upsert};
use crate::testing::{entity, instance, task, ACCOUNT, REGION};

fn record(detail: serde_json::Value, kind: Kind) -> StoredRecord {
    let e = entity(kind, &detail);
    let value = encode_record(&Upsert::event(&e));
    StoredRecord::new(e.key, "k".into(), 2, 1, value)
}

fn running_task() -> StoredRecord {
    record(task("web", "t1", "RUNNING", 1), Kind::Task)
}

#[test]
fn every_filter_matches_its_field() {
    let t = running_task();
    let all = Filters::all(Kind::Task);
    assert!(all.matches(&t));
    let cases: Vec<(Filters, bool)> = vec![
        (
            Filters {
                status: Some("RUNNING"),
                ..all.clone()
            },
            true,
        ),
        (
            Filters {
                status: Some("STOPPED"),
                ..all.clone()
            },
            false,
        ),
        (
            Filters {
                desired_status: Some("RUNNING"),
                ..all.clone()
            },
            true,
        ),
        (
            Filters {
                desired_status: Some("STOPPED"),
                ..all.clone()
            },
            false,
        ),
        (
            Filters {
                started_by: Some("ecs-svc/1".into()),
                ..all.clone()
            },
            true,
        ),
        (
            Filters {
                started_by: Some("ecs-svc/2".into()),
                ..all.clone()
            },
            false,
        ),
        (
            Filters {
                group: Some("service:web".into()),
                ..all.clone()
            },
            true,
        ),
        (
            Filters {
                group: Some("service:api".into()),
                ..all.clone()
            },
            false,
        ),
        (
            Filters {
                launch_type: Some("EC2".into()),
                ..all.clone()
            },
            true,
        ),
        (
            Filters {
                launch_type: Some("FARGATE".into()),
                ..all.clone()
            },
            false,
        ),
    ];
    for (f, want) in cases {
        assert_eq!(f.matches(&t), want, "{f:?}");
    }
}

#[test]
fn clusters_by_name_match_every_account_by_arn_only_one() {
    let t = running_task();
    let named = |n: &str| Filters {
        cluster: ClusterScope::Named(n.into()),
        ..Filters::all(Kind::Task)
    };
    assert!(named("web").matches(&t));
    assert!(!named("we").matches(&t));
    let exact = |account: &str| Filters {
        cluster: ClusterScope::Exact(ClusterId {
            name: "web".into(),
            partition: "aws".into(),
            region: REGION.into(),
            account: account.into(),
        }),
        ..Filters::all(Kind::Task)
    };
    assert!(exact(ACCOUNT).matches(&t));
    assert!(!exact("999999999999").matches(&t));
}

#[test]
fn container_instances_match_by_id_or_either_arn_format() {
    let t = running_task();
    let by = |v: &str| Filters {
        container_instance: Some(ResourceRef {
            id: "ci1".into(),
            arn: v.starts_with("arn:").then(|| Arn::parse(v).unwrap()),
        }),
        ..Filters::all(Kind::Task)
    };
    assert!(by("ci1").matches(&t));
    assert!(by(&format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/web/ci1"
    ))
    .matches(&t));
    assert!(by(&format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/ci1"
    ))
    .matches(&t));
    assert!(!by(&format!(
        "arn:aws:ecs:{REGION}:999999999999:container-instance/ci1"
    ))
    .matches(&t));
    assert!(!by(&format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/other/ci1"
    ))
    .matches(&t));
}

#[test]
fn kinds_do_not_mix() {
    let i = record(instance("web", "i1", "ACTIVE", 1), Kind::Instance);
    assert!(!Filters::all(Kind::Task).matches(&i));
    assert!(Filters::all(Kind::Instance).matches(&i));
    assert!(Filters {
        status: Some("ACTIVE"),
        ..Filters::all(Kind::Instance)
    }
    .matches(&i));
}

#[test]
fn fingerprints_differ_with_every_filter() {
    let all = Filters::all(Kind::Task);
    let variants = [
        all.clone(),
        Filters::all(Kind::Instance),
        Filters {
            status: Some("RUNNING"),
            ..all.clone()
        },
        Filters {
            desired_status: Some("RUNNING"),
            ..all.clone()
        },
        Filters {
            started_by: Some("x".into()),
            ..all.clone()
        },
        Filters {
            group: Some("x".into()),
            ..all.clone()
        },
        Filters {
            launch_type: Some("EC2".into()),
            ..all.clone()
        },
        Filters {
            cluster: ClusterScope::Named("x".into()),
            ..all.clone()
        },
    ];
    let prints: std::collections::HashSet<u64> =
        variants.iter().map(Filters::fingerprint).collect();
    assert_eq!(prints.len(), variants.len());
}
