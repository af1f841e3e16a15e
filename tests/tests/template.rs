//! template.yaml agrees with the code: every function's binary exists in the
//! workspace, every route of the router is routed by the HTTP API, and every
//! setting the functions read is set.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{Args, Command};
use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r))
        .collect()
}

/// Binary names declared by the workspace's function crates.
fn workspace_binaries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("Cargo.toml");
        let mut in_bin = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && line.starts_with("name") {
                out.insert(line.split('"').nth(1).unwrap_or_default().to_string());
            }
        }
    }
    out
}

#[test]
fn every_function_binary_exists_in_the_workspace() {
    let t = template();
    let bins = workspace_binaries();
    let fns = functions(&t);
    assert_eq!(fns.len(), 4);
    let mut named = BTreeSet::new();
    for (name, f) in fns {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        assert_eq!(f["Properties"]["CodeUri"].as_str(), Some("."), "{name}");
        let bin = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary")
            .to_string();
        assert!(
            bins.contains(&bin),
            "{name}: binary {bin} is not in the workspace ({bins:?})"
        );
        named.insert(bin);
    }
    assert_eq!(
        named,
        ["css-api", "css-ingest", "css-reconcile", "css-watch"]
            .map(String::from)
            .into()
    );
    assert_eq!(t["Globals"]["Function"]["Runtime"], "provided.al2023");
}

#[test]
fn every_route_is_routed_by_the_http_api() {
    let t = template();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (_, f) in functions(&t) {
        for (_, ev) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if ev["Type"] == "HttpApi" {
                let p = &ev["Properties"];
                routes.push((
                    p["Method"].as_str().unwrap().to_string(),
                    p["Path"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    for (method, _, doc_path) in css::api::ROUTES {
        let covered = routes.iter().any(|(m, p)| {
            m == method
                && (p == doc_path
                    || p.strip_suffix("{proxy+}")
                        .is_some_and(|prefix| doc_path.starts_with(prefix)))
        });
        assert!(
            covered,
            "{method} {doc_path} is not routed in template.yaml ({routes:?})"
        );
    }
    assert_eq!(
        routes.len(),
        css::api::ROUTES.len(),
        "no route the router does not serve"
    );
    assert_eq!(
        t["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"],
        "AWS_IAM"
    );
}

#[test]
fn every_setting_the_functions_read_is_set() {
    let t = template();
    let cmd = css::config::StoreArgs::augment_args(Command::new("css"));
    let read: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert!(read.contains("CSS_ETCD_ENDPOINTS") && read.contains("CSS_CURSOR_TABLE"));
    let global: BTreeSet<String> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("global variables")
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let mut set = global.clone();
    for (_, f) in functions(&t) {
        for k in f["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            set.insert(k.as_str().unwrap_or_default().to_string());
        }
    }
    let missing: Vec<&String> = read.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "settings read by the code but not set in template.yaml: {missing:?}"
    );
    // The cursor table only where it is used.
    let watch = &t["Resources"]["WatchFunction"]["Properties"]["Environment"]["Variables"];
    assert!(watch.get("CSS_CURSOR_TABLE").is_some());
    assert!(!global.contains("CSS_CURSOR_TABLE"));
}

/// The cursor table carries the owner index the quota counts through, and
/// the watch function may query it.
#[test]
fn cursor_table_has_the_owner_index() {
    let t = template();
    let table = &t["Resources"]["CursorTable"]["Properties"];
    let indexes = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes");
    let owner = indexes
        .iter()
        .find(|i| i["IndexName"] == css::cursor::dynamodb::OWNER_INDEX)
        .expect("the owner index");
    let keys: Vec<(&str, &str)> = owner["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("principal", "HASH"), ("expiresAt", "RANGE")]);
    let policy =
        serde_yaml_ng::to_string(&t["Resources"]["WatchFunction"]["Properties"]["Policies"])
            .unwrap();
    assert!(policy.contains("dynamodb:Query"), "{policy}");
    assert!(
        policy.contains(&format!("/index/{}", css::cursor::dynamodb::OWNER_INDEX)),
        "{policy}"
    );
}
