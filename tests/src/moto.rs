//! moto's server mode (real AWS API servers for SQS, DynamoDB, ECS, EC2) on a
//! free loopback port, stopped on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python with moto: $PYTHON (scripts/venv.sh sets it), else the
/// scripts' virtual environment in the repository, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("PYTHON") {
        return p;
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".into()
}

pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    /// Starts `python3 -m moto.server`. Panics (failing the test loudly) when
    /// moto is not installed.
    pub fn start() -> MotoServer {
        let python = python();
        let has_moto = Command::new(&python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            has_moto,
            "moto is not installed for {python}: run scripts/prereqs.sh test (it installs moto[server] into the scripts' virtual environment, .venv)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start moto");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        MotoServer { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config())
    }
}

/// The AWS CLI of the scripts' virtual environment (beside its Python).
pub fn aws_cli() -> std::path::PathBuf {
    let aws = std::path::Path::new(&python()).with_file_name("aws");
    assert!(
        aws.exists(),
        "the AWS CLI is not at {}: run scripts/prereqs.sh test (it installs scripts/requirements.lock)",
        aws.display()
    );
    aws
}

impl MotoServer {
    /// The environment that points the AWS CLI (and boto3) at this server.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    /// Runs `aws ARGS --output json` against this server; its answer as JSON.
    pub fn aws(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(aws_cli())
            .args(args)
            .args(["--output", "json"])
            .envs(self.cli_env())
            .output()
            .expect("run the AWS CLI");
        assert!(
            out.status.success(),
            "aws {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// An SDK config pointed at this moto server (us-east-1, dummy keys).
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.endpoint())
    }

    /// An ECS client of this server with the task definition `web`
    /// registered (what services are created from).
    pub async fn ecs_with_task_definition(&self) -> aws_sdk_ecs::Client {
        let ecs = aws_sdk_ecs::Client::new(&self.sdk_config());
        let web = aws_sdk_ecs::types::ContainerDefinition::builder()
            .name("web")
            .image("nginx:1.27")
            .memory(4)
            .build();
        (ecs.register_task_definition().family("web"))
            .container_definitions(web)
            .send()
            .await
            .expect("moto registers a task definition");
        ecs
    }

    /// Builds an ECS fleet through moto's API with tests/moto/seed_ecs.py
    /// (boto3); answers the created ARNs per cluster.
    pub fn seed_ecs(&self, spec: &serde_json::Value) -> serde_json::Value {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("moto/seed_ecs.py");
        let out = Command::new(python())
            .arg(script)
            .arg(self.endpoint())
            .arg(spec.to_string())
            .output()
            .expect("run seed_ecs.py");
        assert!(
            out.status.success(),
            "seed_ecs.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("seed_ecs.py prints JSON")
    }
}

/// The subscription cursor table as template.yaml defines it: partition key
/// `id`, and the owner index the per-owner quota counts through.
pub async fn create_cursor_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    create_cursor_table_with(client, name, true).await
}

/// The cursor table as the template makes it, or (`owner_index` false) as a
/// hand-made table or a stack not yet updated has it: the key alone.
pub async fn create_cursor_table_with(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    owner_index: bool,
) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let attr = |n: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .expect("attribute definition")
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("key schema")
    };
    let table = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("id", ScalarAttributeType::S))
        .key_schema(key("id", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest);
    let table = if owner_index {
        table
            .attribute_definitions(attr("principal", ScalarAttributeType::S))
            .attribute_definitions(attr("expiresAt", ScalarAttributeType::N))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(css::cursor::dynamodb::OWNER_INDEX)
                    .key_schema(key("principal", KeyType::Hash))
                    .key_schema(key("expiresAt", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .expect("owner index"),
            )
    } else {
        table
    };
    table.send().await.expect("create the cursor table in moto");
}

/// An SDK config pointed at `endpoint` (moto, or a proxy in front of it):
/// us-east-1, dummy keys.
pub fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .http_client(css::config::aws_http_client())
        .build()
}
