//! css-record decodes a value as etcdctl prints it, in either format.

use std::io::Write;
use std::process::{Command, Stdio};

use css::model::{Entity, Kind};
use css::store::{encode_record, record_json, Upsert};

fn run(input: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_css-record"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("css-record runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("css-record");
    (out.status.success(), out.stdout)
}

#[test]
fn decodes_both_formats_as_etcdctl_prints_them() {
    let detail = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/c1/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","lastStatus":"RUNNING","version":4}"#;
    let raw = serde_json::value::RawValue::from_string(detail.to_string()).expect("raw");
    let e = Entity::from_raw(Kind::Task, raw, true).expect("entity");
    let w = Upsert::event(&e);
    for value in [encode_record(&w).to_vec(), record_json(&w)] {
        let mut printed = value.clone();
        printed.push(b'\n');
        let (ok, out) = run(&printed);
        assert!(ok);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON out");
        assert_eq!(v["entity"]["version"], 4);
        assert_eq!(v["ecsVersion"], 4);
    }
    let (ok, _) = run(b"not a record\n");
    assert!(!ok, "garbage is refused");
}
