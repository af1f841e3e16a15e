//! The etcd stack's custom resources (css-certs) as CloudFormation drives
//! them: requests in, secrets written (Secrets Manager in moto), subnets read
//! (EC2 in moto), the answer PUT to the response URL (an S3 object in moto),
//! and an etcd that runs on what it issued, reached with the functions' secret.

use css::model::Kind;
use css_tests::cfn::Cfn;
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::pki::TestPki;
use css_tests::EtcdServer;
use serde_json::{json, Value};

fn arn(props: &Value, field: &str, i: Option<usize>) -> String {
    let v = match i {
        Some(i) => &props[field][i],
        None => &props[field],
    };
    v.as_str().expect("ARN").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_into_the_templates_secrets_and_etcd_runs_on_them() {
    let cfn = Cfn::new().await;
    let props = cfn
        .certificate_properties(&["127.0.0.1", "10.0.1.11", "10.0.2.12"])
        .await;
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok, "{answer}");
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["LogicalResourceId"], "EtcdCertificates");
    let first = cfn.read(&arn(&props, "MemberSecretArns", Some(0))).await;
    let client = arn(&props, "ClientSecretArn", None);
    let functions = cfn.read(&client).await;
    assert_eq!(first["ca"], functions["ca"], "one CA");
    let ca = cfn.read(&arn(&props, "CaSecretArn", None)).await;
    assert_eq!(ca["cert"], first["ca"]);
    assert!(ca["key"]
        .as_str()
        .is_some_and(|k| k.contains("PRIVATE KEY")));
    assert_eq!(ca["memberIps"], props["MemberIps"]);

    // etcd on member 0's certificate (SAN 127.0.0.1), the service on the
    // functions' secret, as CSS_ETCD_TLS_SECRET names it.
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = |v: &Value| css_certs::Pem {
        cert: v["cert"].as_str().expect("cert").into(),
        key: v["key"].as_str().expect("key").into(),
    };
    let etcd = EtcdServer::start_with_pki(TestPki::write(
        dir.path(),
        first["ca"].as_str().expect("ca"),
        &pem(&first),
        &pem(&functions),
    ));
    let mut args = css_tests::fixtures::store_args(vec![etcd.endpoint()]);
    args.etcd_tls_secret = Some(client.clone());
    let overrides = css::setup::Overrides {
        sdk: Some(cfn.moto.sdk_config()),
        ..Default::default()
    };
    let parts = css::setup::build(&args, css::setup::Wants::default(), overrides).await;
    let store = parts
        .expect("the service reaches etcd with the issued certificates")
        .store;
    let e = entity(
        Kind::Task,
        &task_detail("certs", ACCOUNT, "t1", "RUNNING", 1, true),
    );
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .expect("write over mutual TLS");

    // An update that keeps the IPs issues nothing again.
    let (ok, answer) = cfn.send("Update", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert_eq!(cfn.read(&client).await, functions);
    assert_eq!(
        cfn.read(&arn(&props, "MemberSecretArns", Some(0))).await,
        first
    );

    // Delete leaves the secrets to CloudFormation (they are its resources).
    let (ok, answer) = cfn.send("Delete", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert_eq!(cfn.read(&client).await, functions);
}

#[tokio::test]
async fn a_members_ip_changes_only_when_replace_member_names_it() {
    let cfn = Cfn::new().await;
    let props = cfn
        .certificate_properties(&["10.0.0.10", "10.0.1.11", "10.0.2.12"])
        .await;
    let (_, answer) = cfn.send("Create", &props).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let secrets: Vec<String> = (0..3)
        .map(|i| arn(&props, "MemberSecretArns", Some(i)))
        .collect();
    let before = [
        cfn.read(&secrets[0]).await,
        cfn.read(&secrets[1]).await,
        cfn.read(&secrets[2]).await,
    ];
    let client = cfn.read(&arn(&props, "ClientSecretArn", None)).await;

    // m1's subnet edited: refused, answered FAILED with the way out, and
    // the invocation itself succeeds (Lambda must not run it again).
    let mut moved = props.clone();
    moved["MemberIps"][1] = json!("10.0.4.44");
    let (ok, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &moved, Some(&props))
        .await;
    assert!(ok, "answered, so the invocation succeeds");
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("member m1's IP would change from 10.0.1.11 to 10.0.4.44")
            && reason.contains("EtcdReplaceMember=1"),
        "{reason}"
    );
    assert_eq!(cfn.read(&secrets[1]).await, before[1], "nothing issued");
    // Naming another member does not allow it either.
    let mut other = moved.clone();
    other["ReplaceMember"] = json!("2");
    let (_, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &other, Some(&props))
        .await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    // CloudFormation's rollback of the refused update: back to what was issued.
    let (_, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &props, Some(&moved))
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");

    // With ReplaceMember=1: only m1 is issued again, by the same CA.
    moved["ReplaceMember"] = json!("1");
    let (ok, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &moved, Some(&props))
        .await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    let m1 = cfn.read(&secrets[1]).await;
    assert_ne!(m1["cert"], before[1]["cert"], "m1 issued again");
    assert_eq!(m1["ca"], before[1]["ca"], "by the same CA");
    assert_eq!(cfn.read(&secrets[0]).await, before[0]);
    assert_eq!(cfn.read(&secrets[2]).await, before[2]);
    assert_eq!(
        cfn.read(&arn(&props, "ClientSecretArn", None)).await,
        client
    );
    let ca = cfn.read(&arn(&props, "CaSecretArn", None)).await;
    assert_eq!(ca["memberIps"], moved["MemberIps"]);

    // Rolled back after it succeeded (a later resource failed): the old
    // properties name m1, so its IP may change back.
    let (_, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &props, Some(&moved))
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let ca = cfn.read(&arn(&props, "CaSecretArn", None)).await;
    assert_eq!(ca["memberIps"], props["MemberIps"]);
}

#[tokio::test]
async fn the_cluster_grows_by_an_update_and_never_shrinks() {
    let cfn = Cfn::new().await;
    let three = cfn
        .certificate_properties(&["10.0.0.10", "10.0.1.11", "10.0.2.12"])
        .await;
    let mut one = three.clone();
    one["MemberIps"] = json!(["10.0.0.10"]);
    one["MemberSecretArns"] = json!([three["MemberSecretArns"][0]]);
    let (_, answer) = cfn.send("Create", &one).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let m0 = cfn.read(&arn(&three, "MemberSecretArns", Some(0))).await;

    let (_, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &three, Some(&one))
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        cfn.read(&arn(&three, "MemberSecretArns", Some(0))).await,
        m0
    );
    for i in 1..3 {
        let m = cfn.read(&arn(&three, "MemberSecretArns", Some(i))).await;
        assert_eq!(m["ca"], m0["ca"], "m{i} issued by the cluster's CA");
    }

    let (_, answer) = cfn
        .send_as("Update", "Custom::EtcdCertificates", &one, Some(&three))
        .await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(answer["Reason"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot shrink from 3 to 1"));
}

#[tokio::test]
async fn placement_answers_each_members_zone_and_refuses_a_shared_one() {
    let cfn = Cfn::new().await;
    let vpc = cfn
        .moto
        .aws(&["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]);
    let vpc = vpc["Vpc"]["VpcId"].as_str().expect("VPC").to_string();
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1a"]
        .iter()
        .enumerate()
    {
        let cidr = format!("10.0.{i}.0/24");
        let out = cfn.moto.aws(&[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            &cidr,
            "--availability-zone",
            zone,
        ]);
        subnets.push(
            out["Subnet"]["SubnetId"]
                .as_str()
                .expect("subnet")
                .to_string(),
        );
    }
    let placed = |ids: &[&String]| json!({"ServiceToken": "x", "SubnetIds": ids});

    let (ok, answer) = cfn
        .send_as(
            "Create",
            "Custom::EtcdPlacement",
            &placed(&[&subnets[0], &subnets[1], &subnets[2]]),
            None,
        )
        .await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert_eq!(
        answer["Data"],
        json!({"Zone0": "us-east-1a", "Zone1": "us-east-1b", "Zone2": "us-east-1c"})
    );
    let (_, answer) = cfn
        .send_as(
            "Create",
            "Custom::EtcdPlacement",
            &placed(&[&subnets[1]]),
            None,
        )
        .await;
    assert_eq!(answer["Data"], json!({"Zone0": "us-east-1b"}), "{answer}");

    // Two members in one zone; a subnet EC2 does not know.
    let unknown = "subnet-0123456789abcdef0".to_string();
    for (ids, why) in [
        (
            vec![&subnets[0], &subnets[1], &subnets[3]],
            "are both in us-east-1a",
        ),
        // (EC2 names the missing subnet; moto may name another.)
        (
            vec![&subnets[0], &unknown, &subnets[2]],
            "InvalidSubnetID.NotFound",
        ),
    ] {
        let (ok, answer) = cfn
            .send_as("Update", "Custom::EtcdPlacement", &placed(&ids), None)
            .await;
        assert!(ok, "answered");
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        let reason = answer["Reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{reason}");
    }
}

#[tokio::test]
async fn every_request_is_answered_even_one_that_does_not_parse() {
    let cfn = Cfn::new().await;
    let props = cfn.certificate_properties(&["10.0.0.10"]).await;
    for (kind, resource, props, why) in [
        (
            "Replace",
            "Custom::EtcdCertificates",
            props.clone(),
            "unknown request type \"Replace\"",
        ),
        (
            "Create",
            "Custom::Other",
            props.clone(),
            "unknown resource type \"Custom::Other\"",
        ),
        (
            "Create",
            "Custom::EtcdCertificates",
            json!({"MemberIps": "10.0.0.1"}),
            "invalid resource properties",
        ),
        (
            "Create",
            "Custom::EtcdPlacement",
            json!(null),
            "invalid resource properties",
        ),
    ] {
        let (ok, answer) = cfn.send_as(kind, resource, &props, None).await;
        assert!(
            ok,
            "{kind} {resource}: answered, so the invocation succeeds"
        );
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        assert!(answer["PhysicalResourceId"].is_string(), "{answer}");
        let reason = answer["Reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{kind} {resource}: {reason}");
    }
    // Deleting a resource that failed to create succeeds (nothing of ours is left).
    let (ok, answer) = cfn
        .send_as("Delete", "Custom::Other", &json!({}), None)
        .await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    // No response URL: nothing can be answered, the invocation fails (logged).
    let err = css_certs::handle(&cfn.clients, json!({"RequestType": "Create"})).await;
    assert!(err.is_err_and(|e| e.to_string().contains("no ResponseURL")));
}

#[tokio::test]
async fn bad_properties_fail_the_resource_with_a_reason() {
    let cfn = Cfn::new().await;
    let m0 = cfn.secret("m0").await;
    let client = cfn.secret("client").await;
    let ca = cfn.secret("ca").await;
    for (props, reason) in [
        (
            json!({"MemberIps": ["10.0.0.1", "10.0.0.2"], "MemberSecretArns": [m0], "ClientSecretArn": client, "CaSecretArn": ca}),
            "one entry per member",
        ),
        (
            json!({"MemberIps": ["not-an-ip"], "MemberSecretArns": [m0], "ClientSecretArn": client, "CaSecretArn": ca}),
            "not-an-ip",
        ),
        (
            json!({"MemberIps": ["10.0.0.1"], "MemberSecretArns": ["no-such-secret"], "ClientSecretArn": client, "CaSecretArn": ca}),
            "no-such-secret",
        ),
        (
            json!({"MemberIps": ["10.0.0.1"], "MemberSecretArns": [m0], "ClientSecretArn": client}),
            "CaSecretArn",
        ),
    ] {
        let (ok, answer) = cfn.send("Create", &props).await;
        assert!(ok, "{props}: answered");
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        let got = answer["Reason"].as_str().unwrap_or("");
        assert!(got.contains(reason), "{got}");
    }
}

/// A request whose AWS calls hang is answered FAILED at the deadline, while
/// the function still has time: CloudFormation never waits its hour.
#[tokio::test]
async fn a_request_that_cannot_finish_is_answered_failed_at_the_deadline() {
    let cfn = Cfn::new().await;
    // An endpoint that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let sdk = cfn
        .moto
        .sdk_config()
        .into_builder()
        .endpoint_url(&endpoint)
        .build();
    let clients = css_certs::Clients {
        sm: aws_sdk_secretsmanager::Client::new(&sdk),
        ec2: css_certs::placement::Ec2::new(&sdk, reqwest::Client::new()).expect("EC2"),
        http: cfn.http.clone(),
        deadline: std::time::Duration::from_secs(2),
        policy: css_certs::Policy::default(),
    };
    let stuck = cfn.with_clients(clients);
    let props = json!({"ServiceToken": "x", "SubnetIds": ["subnet-a"]});
    let started = std::time::Instant::now();
    let (ok, answer) = stuck
        .send_as("Create", "Custom::EtcdPlacement", &props, None)
        .await;
    assert!(ok, "answered");
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        answer["Reason"]
            .as_str()
            .unwrap_or("")
            .contains("not finished within 2 s"),
        "{answer}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(silent);
}

/// Renewal issues again only what is due (less than the lead left, never
/// issued, or not of the kept CA), always under the kept CA; a Create that
/// finds a CA in its secret keeps it. Lifetimes follow the policy.
#[tokio::test]
async fn renewal_issues_only_the_leaves_that_are_due_under_the_kept_ca() {
    let mut cfn = Cfn::new().await;
    let props = cfn
        .certificate_properties(&["10.0.1.10", "10.0.2.10", "10.0.3.10"])
        .await;
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    let ca_arn = arn(&props, "CaSecretArn", None);
    let ca = cfn.read(&ca_arn).await;
    let members: Vec<String> = (0..3)
        .map(|i| arn(&props, "MemberSecretArns", Some(i)))
        .collect();
    let client = arn(&props, "ClientSecretArn", None);
    let end = |v: &Value| {
        css::store::etcd::tls::not_after(v["cert"].as_str().expect("cert").as_bytes())
            .expect("a certificate")
    };
    let days = |t: std::time::SystemTime| {
        t.duration_since(std::time::SystemTime::now())
            .expect("ahead")
            .as_secs_f64()
            / 86_400.0
    };
    // CertificateValidityDays' default: a year (within the clock-skew hour).
    let first = cfn.read(&members[0]).await;
    assert!(
        (days(end(&first)) - 365.0).abs() < 0.1,
        "{}",
        days(end(&first))
    );
    assert!(days(end(&ca)) > 3649.0, "the CA lives ten years");

    let targets = json!({"Renew": {
        "ClusterName": "css", "CaSecretArn": ca_arn, "MemberSecretArns": members, "ClientSecretArn": client,
    }});
    // Nothing due: nothing issued; the figure is the leaves' year.
    let out = css_certs::invoke(&cfn.clients, targets.clone())
        .await
        .expect("renewal");
    assert_eq!(out["renewed"], json!([]), "{out}");
    let left = out["daysLeft"].as_f64().expect("days");
    assert!((left - 365.0).abs() < 0.1, "{left}");

    // m1's secret emptied, the client's holding another CA's certificate:
    // both issued again, by the kept CA; m0 and m2 untouched.
    let other = css_certs::issue("other", &["10.0.0.1".parse().expect("ip")], &[]).expect("certs");
    let foreign = json!({"ca": other.ca, "cert": other.client.cert, "key": other.client.key});
    for (secret, value) in [(&members[1], json!({})), (&client, foreign)] {
        cfn.sm
            .put_secret_value()
            .secret_id(secret)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("put");
    }
    let out = css_certs::invoke(&cfn.clients, targets.clone())
        .await
        .expect("renewal");
    assert_eq!(out["renewed"], json!([members[1], client]), "{out}");
    assert_eq!(cfn.read(&members[0]).await, first);
    for s in [&members[1], &client] {
        assert_eq!(cfn.read(s).await["ca"], ca["cert"], "{s}: the kept CA");
    }
    assert_eq!(cfn.read(&ca_arn).await, ca, "the CA is never issued again");

    // A lead longer than what the leaves have left (366 days against 365):
    // every one is due, and lives the new lifetime (800 days).
    cfn.clients.policy = css_certs::Policy::new(
        std::time::Duration::from_secs(800 * 86_400),
        std::time::Duration::from_secs(366 * 86_400),
    )
    .expect("policy");
    let out = css_certs::invoke(&cfn.clients, targets.clone())
        .await
        .expect("renewal");
    assert_eq!(
        out["renewed"].as_array().map(Vec::len),
        Some(4),
        "every leaf has under 366 days left: {out}"
    );
    let renewed = cfn.read(&members[0]).await;
    assert!((days(end(&renewed)) - 800.0).abs() < 0.1);
    // A renewed member certificate still names its member's IP.
    let cert = renewed["cert"].as_str().expect("cert");
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).expect("PEM");
    let x509 = pem.parse_x509().expect("X.509");
    let san = x509
        .subject_alternative_name()
        .expect("SAN")
        .expect("a SAN");
    let names = &san.value.general_names;
    assert!(
        names.contains(&x509_parser::extensions::GeneralName::IPAddress(&[
            10, 0, 1, 10
        ])),
        "{names:?}"
    );

    // A Create run again (a retried request) finds the CA and keeps it.
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert_eq!(cfn.read(&ca_arn).await["cert"], ca["cert"]);
    assert_eq!(cfn.read(&client).await["ca"], ca["cert"]);

    // A schedule input the function cannot read fails the run, naming why.
    let bad = css_certs::invoke(&cfn.clients, json!({"Renew": {"CaSecretArn": 7}})).await;
    assert!(bad.is_err_and(|e| e.to_string().contains("invalid resource properties")));
}
