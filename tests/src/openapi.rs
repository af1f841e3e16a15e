//! The OpenAPI document shipped in the repository, as a response validator.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::{json, Value};

pub struct OpenApi {
    pub doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl OpenApi {
    pub fn load() -> OpenApi {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("openapi.yaml is readable");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is valid YAML");
        OpenApi {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// Validates `instance` against `#/components/schemas/<name>`.
    pub fn check(&self, name: &str, instance: &Value) {
        let validator = {
            let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entry(name.to_string())
                .or_insert_with(|| {
                    assert!(
                        self.doc["components"]["schemas"].get(name).is_some(),
                        "no schema {name}"
                    );
                    // The whole document as root, so its internal $refs resolve.
                    let mut root = self.doc.clone();
                    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
                    root["$ref"] = json!(format!("#/components/schemas/{name}"));
                    std::sync::Arc::new(jsonschema::validator_for(&root).expect("schema compiles"))
                })
                .clone()
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "response does not match schema {name}: {errors:?}\n{instance}"
        );
    }

    /// (METHOD, path) of every operation.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }
}
