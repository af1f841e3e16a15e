//! CloudFormation's side of the etcd stack's custom resources (css-certs):
//! requests built as CloudFormation sends them, handled by the real handler
//! against moto (Secrets Manager, EC2), and the answer read back from the
//! pre-signed response URL (an S3 object in moto).

use serde_json::{json, Value};

use crate::moto::MotoServer;

pub struct Cfn {
    pub moto: MotoServer,
    /// CloudFormation's own view of moto (reading the secrets and answers),
    /// which stays when a test swaps the handler's `clients`.
    pub sm: aws_sdk_secretsmanager::Client,
    pub http: reqwest::Client,
    /// What the handler under test is given.
    pub clients: css_certs::Clients,
    bucket: String,
}

impl Cfn {
    pub async fn new() -> Cfn {
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
        let clients = css_certs::Clients {
            sm: sm.clone(),
            ec2: css_certs::placement::Ec2::new(&moto.sdk_config(), http.clone()).expect("EC2"),
            http: http.clone(),
            deadline: css_certs::resource::DEADLINE,
            policy: css_certs::Policy::default(),
        };
        Cfn {
            moto,
            sm,
            http,
            clients,
            bucket,
        }
    }

    /// The same CloudFormation side with other clients (and deadline).
    pub fn with_clients(mut self, clients: css_certs::Clients) -> Cfn {
        self.clients = clients;
        self
    }

    /// A secret as the template creates it, before the resource fills it.
    pub async fn secret(&self, name: &str) -> String {
        let out = self
            .sm
            .create_secret()
            .name(name)
            .secret_string("{}")
            .send()
            .await;
        out.expect("secret").arn().expect("ARN").to_string()
    }

    pub async fn read(&self, arn: &str) -> Value {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .expect("secret value");
        serde_json::from_str(out.secret_string().expect("string")).expect("JSON")
    }

    /// The certificate resource's properties as the etcd template passes
    /// them, with a new secret for each member, the client and the CA.
    pub async fn certificate_properties(&self, ips: &[&str]) -> Value {
        let mut members = Vec::new();
        for i in 0..ips.len() {
            members.push(
                self.secret(&format!("m{i}-{}", rand::random::<u32>()))
                    .await,
            );
        }
        json!({
            "ServiceToken": "x",
            "ClusterName": "css",
            "ReplaceMember": "none",
            "MemberIps": ips,
            "MemberSecretArns": members,
            "ClientSecretArn": self.secret(&format!("client-{}", rand::random::<u32>())).await,
            "CaSecretArn": self.secret(&format!("ca-{}", rand::random::<u32>())).await,
        })
    }

    /// Sends one certificate request; answers whether the invocation
    /// succeeded and what CloudFormation received.
    pub async fn send(&self, kind: &str, props: &Value) -> (bool, Value) {
        self.send_as(kind, "Custom::EtcdCertificates", props, None)
            .await
    }

    pub async fn send_as(
        &self,
        kind: &str,
        resource: &str,
        props: &Value,
        old: Option<&Value>,
    ) -> (bool, Value) {
        let url = format!("{}/{kind}-{}", self.bucket, rand::random::<u32>());
        let mut req = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:eu-west-1:111122223333:function:certs",
            "RequestId": "r1",
            "ResponseURL": url,
            "StackId": "arn:aws:cloudformation:eu-west-1:111122223333:stack/css/1",
            "ResourceType": resource,
            "LogicalResourceId": "EtcdCertificates",
            "ResourceProperties": props,
        });
        if kind != "Create" {
            req["PhysicalResourceId"] = json!("EtcdCertificates-etcd");
        }
        if kind == "Update" {
            req["OldResourceProperties"] = old.unwrap_or(props).clone();
        }
        let ok = css_certs::handle(&self.clients, req).await.is_ok();
        (ok, self.answer(&url).await)
    }

    /// What CloudFormation found at its response URL.
    async fn answer(&self, url: &str) -> Value {
        // Reading the object back is an S3 GetObject: moto wants it signed
        // (it does not check the signature).
        let auth = "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let answer = self
            .http
            .get(url)
            .header("authorization", auth)
            .send()
            .await;
        let answer = answer
            .expect("response object")
            .error_for_status()
            .expect("stored");
        answer
            .json()
            .await
            .expect("CloudFormation's answer is JSON")
    }
}
