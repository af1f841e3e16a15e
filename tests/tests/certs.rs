//! The certificate custom resource (css-certs) as CloudFormation drives it:
//! requests in, secrets written (Secrets Manager in moto), the answer PUT to
//! the response URL (an S3 object in moto), and an etcd that runs on what it
//! issued, reached with the functions' secret.

use css::model::Kind;
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::moto::MotoServer;
use css_tests::pki::TestPki;
use css_tests::EtcdServer;
use serde_json::{json, Value};

struct Cfn {
    moto: MotoServer,
    sm: aws_sdk_secretsmanager::Client,
    http: reqwest::Client,
    bucket: String,
}

impl Cfn {
    async fn new() -> Cfn {
        let moto = MotoServer::start();
        let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
        let http = reqwest::Client::new();
        // CloudFormation's response URL is a pre-signed S3 PUT.
        let bucket = format!("{}/cfn-responses", moto.endpoint());
        http.put(&bucket)
            .send()
            .await
            .expect("bucket")
            .error_for_status()
            .expect("bucket");
        Cfn {
            moto,
            sm,
            http,
            bucket,
        }
    }

    /// A secret as the template creates it, before the resource fills it.
    async fn secret(&self, name: &str) -> String {
        let out = self
            .sm
            .create_secret()
            .name(name)
            .secret_string("{}")
            .send()
            .await;
        out.expect("secret").arn().expect("ARN").to_string()
    }

    async fn read(&self, arn: &str) -> Value {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .expect("secret value");
        serde_json::from_str(out.secret_string().expect("string")).expect("JSON")
    }

    /// Sends one request; answers what CloudFormation received.
    async fn send(&self, kind: &str, props: &Value) -> (bool, Value) {
        let url = format!("{}/{kind}-{}", self.bucket, rand::random::<u32>());
        let mut req = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:eu-west-1:111122223333:function:certs",
            "RequestId": "r1",
            "ResponseURL": url,
            "StackId": "arn:aws:cloudformation:eu-west-1:111122223333:stack/css/1",
            "ResourceType": "Custom::EtcdCertificates",
            "LogicalResourceId": "EtcdCertificates",
            "ResourceProperties": props,
        });
        if kind != "Create" {
            req["PhysicalResourceId"] = json!("EtcdCertificates-certificates");
        }
        if kind == "Update" {
            req["OldResourceProperties"] = props.clone();
        }
        let req = serde_json::from_value(req).expect("a custom resource request");
        let ok = css_certs::handle(&self.sm, &self.http, req).await.is_ok();
        // Reading the object back is an S3 GetObject: moto wants it signed
        // (it does not check the signature).
        let auth = "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let answer = self
            .http
            .get(&url)
            .header("authorization", auth)
            .send()
            .await;
        let answer = answer
            .expect("response object")
            .error_for_status()
            .expect("stored");
        (
            ok,
            answer
                .json()
                .await
                .expect("CloudFormation's answer is JSON"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_into_the_templates_secrets_and_etcd_runs_on_them() {
    let cfn = Cfn::new().await;
    let members = vec![
        cfn.secret("m0").await,
        cfn.secret("m1").await,
        cfn.secret("m2").await,
    ];
    let client = cfn.secret("client").await;
    let props = json!({
        "ServiceToken": "x",
        "MemberIps": ["127.0.0.1", "10.0.1.11", "10.0.2.12"],
        "MemberSecretArns": members,
        "ClientSecretArn": client,
    });
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok, "{answer}");
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["LogicalResourceId"], "EtcdCertificates");
    let first = cfn.read(&members[0]).await;
    let functions = cfn.read(&client).await;
    assert_eq!(first["ca"], functions["ca"], "one CA");

    // etcd on member 0's certificate (SAN 127.0.0.1), the service on the
    // functions' secret, as CSS_ETCD_TLS_SECRET names it.
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = |v: &Value| css_certs::Pem {
        cert: v["cert"].as_str().expect("cert").into(),
        key: v["key"].as_str().expect("key").into(),
    };
    let ca = first["ca"].as_str().expect("ca");
    let etcd = EtcdServer::start_with_pki(TestPki::write(
        dir.path(),
        ca,
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

    // Replaced members (new IPs): everything is issued again, a new CA.
    let mut replaced = props.clone();
    replaced["MemberIps"] = json!(["10.0.0.20", "10.0.1.21", "10.0.2.22"]);
    let (ok, answer) = cfn.send("Update", &replaced).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert_ne!(cfn.read(&client).await["ca"], functions["ca"]);

    // Delete leaves the secrets to CloudFormation (they are its resources).
    let (ok, answer) = cfn.send("Delete", &replaced).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    assert!(cfn.read(&client).await["cert"].is_string());
}

#[tokio::test]
async fn bad_properties_fail_the_resource_with_a_reason() {
    let cfn = Cfn::new().await;
    let m0 = cfn.secret("m0").await;
    let client = cfn.secret("client").await;
    for (props, reason) in [
        (
            json!({"MemberIps": ["10.0.0.1", "10.0.0.2"], "MemberSecretArns": [m0], "ClientSecretArn": client}),
            "one entry per member",
        ),
        (
            json!({"MemberIps": ["not-an-ip"], "MemberSecretArns": [m0], "ClientSecretArn": client}),
            "not-an-ip",
        ),
        (
            json!({"MemberIps": ["10.0.0.1"], "MemberSecretArns": ["no-such-secret"], "ClientSecretArn": client}),
            "no-such-secret",
        ),
    ] {
        let (ok, answer) = cfn.send("Create", &props).await;
        assert!(!ok, "{props}");
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        let got = answer["Reason"].as_str().unwrap_or("");
        assert!(got.contains(reason), "{got}");
    }
}
