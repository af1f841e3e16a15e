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
        Filters {
            account: Some(ACCOUNT.into()),
            ..all.clone()
        },
        Filters {
            region: Some(REGION.into()),
            ..all.clone()
        },
    ];
    let prints: std::collections::HashSet<u64> =
        variants.iter().map(Filters::fingerprint).collect();
    assert_eq!(prints.len(), variants.len());
}

/// `account` and `region` match the record's key, in every kind, with or
/// without other filters; every form is read or refused by the table.
#[test]
fn account_and_region_match_the_records_place() {
    let records = [
        running_task(),
        record(instance("web", "i1", "ACTIVE", 1), Kind::Instance),
        record(
            crate::testing::service(
                "web",
                "api",
                "ACTIVE",
                &["COMPLETED"],
                "2026-01-01T00:00:00Z",
            ),
            Kind::Service,
        ),
    ];
    for r in &records {
        let kind = r.key.kind;
        let f = |account: Option<&str>, region: Option<&str>| Filters {
            account: account.map(String::from),
            region: region.map(String::from),
            ..Filters::all(kind)
        };
        assert!(f(Some(ACCOUNT), None).matches(r), "{kind:?}");
        assert!(f(None, Some(REGION)).matches(r), "{kind:?}");
        assert!(f(Some(ACCOUNT), Some(REGION)).matches(r), "{kind:?}");
        assert!(!f(Some("999999999999"), None).matches(r), "{kind:?}");
        assert!(!f(None, Some("ap-south-2")).matches(r), "{kind:?}");
        assert!(!f(Some(ACCOUNT), Some("ap-south-2")).matches(r), "{kind:?}");
        assert!(f(Some(ACCOUNT), None).post_filtered());
        assert!(f(None, Some(REGION)).post_filtered());
        assert!(!f(None, None).post_filtered());
    }
    let parse = |name: &str, v: &str| {
        let def = FILTERS.iter().find(|d| d.name == name).expect("filter");
        assert!(def.takes(Kind::Task) && def.takes(Kind::Instance) && def.takes(Kind::Service));
        let mut f = Filters::all(Kind::Task);
        def.parse(&mut f, v).map(|()| f)
    };
    assert_eq!(
        parse("account", "123456789012").unwrap().account.as_deref(),
        Some("123456789012")
    );
    for bad in [
        "",
        "12345678901",
        "1234567890123",
        "12345678901a",
        "arn:aws:iam::123456789012:root",
    ] {
        let e = parse("account", bad).expect_err(bad);
        assert!(e.contains("'account'"), "{e}");
    }
    for good in [
        "eu-west-1",
        "us-east-1",
        "us-gov-west-1",
        "ap-southeast-2",
        "cn-north-1",
        "il-central-1",
    ] {
        assert_eq!(parse("region", good).unwrap().region.as_deref(), Some(good));
    }
    for bad in [
        "",
        "eu",
        "eu-west",
        "EU-WEST-1",
        "eu-west-1a",
        "eu_west_1",
        "west-1",
        "eu--1",
    ] {
        let e = parse("region", bad).expect_err(bad);
        assert!(e.contains("'region'"), "{e}");
    }
}
