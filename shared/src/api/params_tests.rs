use super::*;

fn parse(kind: Kind, query: &str) -> Result<Filters, ApiError> {
    filters(kind, &Params::parse_with_filters(Some(query), kind, &[])?)
}

fn refused(kind: Kind, query: &str) -> String {
    match parse(kind, query) {
        Err(ApiError::BadParam { name, .. }) => name,
        other => panic!("{query}: {other:?}"),
    }
}

#[test]
fn every_launch_type_is_accepted() {
    for (given, kept) in [
        ("EC2", "EC2"),
        ("FARGATE", "FARGATE"),
        ("EXTERNAL", "EXTERNAL"),
        ("ec2", "EC2"),
        ("Fargate", "FARGATE"),
        // A future value of the same shape.
        ("MANAGED_INSTANCES", "MANAGED_INSTANCES"),
    ] {
        let f = parse(Kind::Task, &format!("launchType={given}"))
            .unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(f.launch_type.as_deref(), Some(kept), "{given}");
    }
    for bad in [
        "",
        "0",
        "2EC",
        "_X",
        "EC 2",
        "EC2;",
        "fargate%2F",
        &"A".repeat(65),
    ] {
        assert_eq!(
            refused(Kind::Task, &format!("launchType={bad}")),
            "launchType",
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_and_repeated_parameters_are_named() {
    assert_eq!(refused(Kind::Task, "colour=red"), "colour");
    assert_eq!(
        refused(Kind::Task, "status=RUNNING&status=STOPPED"),
        "status"
    );
    // Task-only filters are unknown for instances.
    for p in [
        "desiredStatus=RUNNING",
        "group=g",
        "launchType=EC2",
        "startedBy=x",
    ] {
        let name = p.split('=').next().unwrap();
        assert_eq!(refused(Kind::Instance, p), name);
    }
}

#[test]
fn statuses_of_each_kind_in_any_case() {
    for s in Kind::Task.statuses() {
        let f = parse(Kind::Task, &format!("status={}", s.to_lowercase())).unwrap();
        assert_eq!(f.status, Some(*s));
    }
    for s in Kind::Instance.statuses() {
        let f = parse(Kind::Instance, &format!("status={s}")).unwrap();
        assert_eq!(f.status, Some(*s));
    }
    assert_eq!(refused(Kind::Task, "status=ACTIVE"), "status");
    assert_eq!(refused(Kind::Instance, "status=RUNNING"), "status");
    for d in ["PENDING", "running", "Stopped"] {
        assert!(
            parse(Kind::Task, &format!("desiredStatus={d}")).is_ok(),
            "{d}"
        );
    }
    assert_eq!(
        refused(Kind::Task, "desiredStatus=SLEEPING"),
        "desiredStatus"
    );
}

#[test]
fn clusters_by_name_or_arn() {
    let f = parse(Kind::Task, "cluster=web").unwrap();
    assert_eq!(f.cluster, ClusterScope::Named("web".into()));
    let f = parse(
        Kind::Task,
        "cluster=arn:aws-cn:ecs:cn-north-1:123456789012:cluster/web",
    )
    .unwrap();
    match f.cluster {
        ClusterScope::Exact(c) => {
            assert_eq!(c.place(), ("aws-cn", "cn-north-1", "123456789012"));
            assert_eq!(c.name, "web");
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "we%20b",
        "arn:aws:ecs:us-east-1:123456789012:task/web/x",
        "arn:nope",
    ] {
        assert_eq!(
            refused(Kind::Task, &format!("cluster={bad}")),
            "cluster",
            "{bad}"
        );
    }
}

#[test]
fn container_instances_by_arn_in_either_format_or_id() {
    for v in [
        "arn:aws:ecs:us-east-1:123456789012:container-instance/web/abc",
        "arn:aws:ecs:us-east-1:123456789012:container-instance/abc",
        "abc",
    ] {
        let f = parse(Kind::Task, &format!("containerInstance={v}")).unwrap();
        assert_eq!(f.container_instance.unwrap().id, "abc", "{v}");
    }
    assert_eq!(
        refused(
            Kind::Task,
            "containerInstance=arn:aws:ecs:us-east-1:123456789012:task/web/abc"
        ),
        "containerInstance"
    );
}

#[test]
fn limits_waits_and_revisions_are_bounded() {
    fn p(q: &str) -> Params<'_> {
        Params::parse(Some(q), &["limit", "wait", "since"]).unwrap()
    }
    assert_eq!(p("").limit().unwrap(), DEFAULT_LIMIT);
    assert_eq!(p("limit=1000").limit().unwrap(), 1000);
    for bad in ["limit=0", "limit=1001", "limit=x", "limit=-1"] {
        assert!(p(bad).limit().is_err(), "{bad}");
    }
    assert_eq!(p("").wait().unwrap(), Duration::from_secs(20));
    assert_eq!(p("wait=0").wait().unwrap(), Duration::ZERO);
    assert!(p("wait=26").wait().is_err());
    assert_eq!(p("since=42").revision("since").unwrap(), Some(42));
    assert_eq!(p("").revision("since").unwrap(), None);
    for bad in ["since=-1", "since=%2B5", "since=1.5", "since=x"] {
        assert!(p(bad).revision("since").is_err(), "{bad}");
    }
}
