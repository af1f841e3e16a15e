//! Every `curl` and `cssctl` example in README.md, run against server mode
//! with the demo fleet (as `scripts/run.sh` starts it). The README's ids,
//! tokens and revisions are placeholders for values of a live store: they are
//! replaced by real ones of the running demo before each example is sent.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use css_tests::server::TestServer;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// The README's shell examples: each command line of a ```sh block, with the
/// comment lines that follow it (where expected answers are written).
fn examples() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let l = line.trim();
        if l.starts_with('#') {
            if let Some(last) = out.last_mut() {
                last.1.push(l.to_string());
            }
        } else if !l.is_empty() {
            out.push((l.to_string(), Vec::new()));
        }
    }
    out
}

/// Shell words of a simple command line: bare words and '...' strings; a
/// word starting with `#` begins a comment.
fn words(line: &str) -> (Vec<String>, String) {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    let mut comment = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            comment = chars.collect();
            break;
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\'' {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            } else {
                w.push(c);
            }
        }
        words.push(w);
    }
    (words, comment)
}

/// The status an example documents: `# 204` on its line or `(400)` at the
/// end of a comment after it; else what its method answers on success.
fn expected_status(method: &str, comment: &str, after: &[String]) -> u16 {
    let code = |s: &str| -> Option<u16> {
        let s = s.trim().trim_start_matches('#').trim();
        let s = s
            .strip_suffix(')')
            .and_then(|s| s.rsplit_once('('))
            .map_or(s, |(_, c)| c);
        (s.len() == 3).then(|| s.parse().ok()).flatten()
    };
    code(comment)
        .or_else(|| after.iter().find_map(|c| code(c)))
        .unwrap_or(match method {
            "POST" => 201,
            "DELETE" => 204,
            _ => 200,
        })
}

/// Values of the running demo that the README's placeholders stand for.
struct Live {
    /// A task of "web" in 123456789012/us-east-1.
    task_id: String,
    /// A container instance of that cluster running a service:frontend task.
    instance_id: String,
    next_token: Option<String>,
    subscription: Option<String>,
    revision: i64,
    /// The store's identity (the README's is of another run).
    store: String,
}

fn is_readme_task_id(w: &str) -> bool {
    w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()) && w != "f".repeat(32)
}

/// The README's subscription id, from another run.
const README_SUBSCRIPTION: &str = "40643a85c2d660fb0ef671ee05702580";
/// The README's store identity, from another run.
const README_STORE: &str = "5b1e0c7a9d2f4e8b8c3a6f0d1e2b4c5a";

/// Replaces every placeholder of one example.
fn substitute(text: &str, live: &Live) -> String {
    // Task ids first (the README's come from another run of the demo), before
    // real ids, which look alike, are put in.
    let mut s = String::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() {
            word.push(c);
            continue;
        }
        let other_id = word == README_SUBSCRIPTION || word == README_STORE;
        s.push_str(if is_readme_task_id(&word) && !other_id {
            &live.task_id
        } else {
            &word
        });
        word.clear();
        s.push(c);
    }
    s.pop();
    s = s
        .replace("<instance ARN or id>", &live.instance_id)
        .replace("<container instance ARN or id>", &live.instance_id)
        .replace("<revision>", &live.revision.to_string());
    if let Some(id) = &live.subscription {
        s = s.replace(README_SUBSCRIPTION, id).replace("<id>", id);
    }
    // Query values of another run of the demo: tokens, revisions, waits.
    for (name, value) in [
        ("nextToken=", live.next_token.clone().unwrap_or_default()),
        ("since=", (live.revision - 3).max(0).to_string()),
        ("ack=", live.revision.to_string()),
        ("store=", live.store.clone()),
        ("wait=", "1".to_string()),
    ] {
        if let Some(at) = s.find(name) {
            let start = at + name.len();
            let end = s[start..]
                .find(['&', '\'', ' '])
                .map_or(s.len(), |n| start + n);
            s.replace_range(start..end, &value);
        }
    }
    s.replace("--wait 20", "--wait 1")
}

async fn demo_state(s: &TestServer) -> Live {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .get("/v1/tasks?cluster=arn:aws:ecs:us-east-1:123456789012:cluster/web&group=service:frontend&status=RUNNING")
            .await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if let Some(t) = items.first() {
            let arn = t["entity"]["taskArn"].as_str().unwrap();
            let ci = t["entity"]["containerInstanceArn"].as_str().unwrap();
            return Live {
                task_id: arn.rsplit('/').next().unwrap().to_string(),
                instance_id: ci.rsplit('/').next().unwrap().to_string(),
                next_token: None,
                subscription: None,
                revision: r.body["revision"].as_str().unwrap().parse().unwrap(),
                store: r.body["store"].as_str().unwrap().to_string(),
            };
        }
        assert!(Instant::now() < deadline, "the demo fleet did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_example_works() {
    let s = TestServer::start(None, &["--demo"]).await;
    let mut live = demo_state(&s).await;
    let examples = examples();
    let (mut curls, mut cssctls) = (0, 0);
    for (line, after) in &examples {
        // Placeholders first: `<container instance ARN or id>` holds spaces.
        let (w, comment) = words(&substitute(line, &live));
        match w.first().map(String::as_str) {
            Some("curl") if line.contains("localhost:3000") => {
                curls += 1;
                let mut method = "GET".to_string();
                let mut body = None;
                let mut url = None;
                let mut i = 1;
                while i < w.len() {
                    match w[i].as_str() {
                        "-s" => {}
                        "-X" => {
                            i += 1;
                            method = w[i].clone();
                        }
                        "-d" => {
                            i += 1;
                            body = Some(
                                serde_json::from_str::<Value>(&w[i]).expect("README body is JSON"),
                            );
                            method = if method == "GET" {
                                "POST".into()
                            } else {
                                method
                            };
                        }
                        other => url = Some(other.to_string()),
                    }
                    i += 1;
                }
                let url = url.expect("a URL");
                let path = url.trim_start_matches("localhost:3000").to_string();
                let want = expected_status(&method, &comment, after);
                eprintln!("README example: {method} {path}");
                let r = s.request(method.parse().unwrap(), &path, body).await;
                assert_eq!(
                    r.status.as_u16(),
                    want,
                    "README: {line}\nsent: {method} {path}\n{}",
                    r.body
                );
                if let Some(t) = r.body["nextToken"].as_str() {
                    live.next_token = Some(t.to_string());
                }
                if let Some(rev) = r.body["revision"].as_str() {
                    live.revision = rev.parse().unwrap();
                }
                if method == "POST" && path == "/v1/subscriptions" {
                    live.subscription = r.body["id"].as_str().map(String::from);
                }
                if method == "DELETE" {
                    live.subscription = None;
                }
                // The launch type examples must find the demo's tasks (all EC2).
                if path.contains("launchType=") {
                    assert!(
                        !r.body["items"].as_array().unwrap().is_empty(),
                        "README: {line} found nothing"
                    );
                }
            }
            Some("cssctl") => {
                cssctls += 1;
                let args: Vec<String> = w[1..].to_vec();
                let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cssctl"));
                cmd.args(&args)
                    .env("CSS_ENDPOINT", &s.base)
                    .kill_on_drop(true)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                if args.iter().any(|a| a == "--watch") {
                    // Runs until interrupted: it lists, then keeps going.
                    let mut child = cmd.spawn().unwrap();
                    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
                    let first = tokio::time::timeout(Duration::from_secs(20), out.next_line())
                        .await
                        .expect("the watch prints its list")
                        .unwrap();
                    assert!(first.is_some(), "README: {line}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    assert!(child.try_wait().unwrap().is_none(), "README: {line} exited");
                    child.kill().await.unwrap();
                } else {
                    let o = cmd.output().await.unwrap();
                    assert!(
                        o.status.success(),
                        "README: {line}\nran: cssctl {args:?}\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert!(!o.stdout.is_empty(), "README: {line} printed nothing");
                    // `subscriptions create` prints the subscription the
                    // README's later `<id>` stands for.
                    if args.starts_with(&["subscriptions".into(), "create".into()]) {
                        let sub: Value = serde_json::from_slice(&o.stdout).unwrap();
                        live.subscription = sub["id"].as_str().map(String::from);
                        live.revision = sub["cursor"].as_str().unwrap().parse().unwrap();
                    }
                }
            }
            _ => {}
        }
    }
    assert!(curls >= 15, "README's curl examples were found: {curls}");
    assert!(
        cssctls >= 6,
        "README's cssctl examples were found: {cssctls}"
    );
    s.server.shutdown().await.unwrap();
}
