//! `-o yaml`: JSON data as block YAML that every reader takes back as the
//! same data. serde_yaml_ng quotes what a YAML 1.2 reader would mistake for
//! another type, but leaves timestamps, `yes`/`no`/`on`/`off` and `1:20`
//! bare, which YAML 1.1 readers (PyYAML, Ruby, most ops scripts) read as
//! dates, booleans and numbers where `-o json` has strings. Here a string is
//! plain only when it cannot be anything but a string under either version;
//! every other string is double-quoted with JSON's escapes, which YAML's
//! double-quoted style shares (as kubectl quotes).

use serde_json::Value;

/// The value as a YAML document (block style, two-space indents).
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    if is_block(v) {
        emit(v, 0, &mut out);
    } else {
        out.push_str(&scalar(v));
        out.push('\n');
    }
    out
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                out.push_str(&pad);
                out.push_str(&string(k));
                out.push(':');
                child(val, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                if is_block(item) {
                    // The item's first line continues after "- ".
                    let mut sub = String::new();
                    emit(item, indent + 2, &mut sub);
                    out.push_str(&sub[indent + 2..]);
                } else {
                    out.push_str(&scalar(item));
                    out.push('\n');
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// A non-empty collection, written over lines of its own.
fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// What follows `key:`: a scalar or empty collection on the same line,
/// else the collection on the lines below, indented.
fn child(v: &Value, indent: usize, out: &mut String) {
    if is_block(v) {
        out.push('\n');
        emit(v, indent + 2, out);
    } else {
        out.push(' ');
        out.push_str(&scalar(v));
        out.push('\n');
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words YAML 1.1 or 1.2 resolve to booleans or null, in any case.
const KEYWORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// A string as a plain scalar when that can only be read back as this
/// string; else double-quoted.
fn string(s: &str) -> String {
    let first = s.chars().next();
    let plain = first.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+".contains(c))
        && !s.ends_with(':')
        && !KEYWORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_another_reader_would_take_for_something_else_are_quoted() {
        for s in [
            "2026-12-01T03:30:02.114Z",
            "2026-12-01",
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "true",
            "Null",
            "~",
            "",
            "1:20",
            "0777",
            "1_000",
            "123",
            "1e3",
            ".inf",
            "0x1F",
            "a: b",
            "- x",
            "#c",
            "x #y",
            "two\nlines",
            "tab\there",
            "it's",
            "\"q\"",
            "trail:",
            " lead",
            "ünï",
            "*alias",
            "&anchor",
            "!tag",
            "%dir",
            "@at",
            "`tick`",
            "{x}",
            "[x]",
        ] {
            let got = string(s);
            assert!(got.starts_with('"'), "{s:?} left plain: {got}");
            let back: String = serde_json::from_str(&got).expect("JSON-quoted");
            assert_eq!(back, s);
        }
        for s in [
            "RUNNING",
            "arn:aws:ecs:us-east-1:123456789012:task/web/00f1efb93f33a82418a3fa166c042522",
            "service:frontend",
            "ecs-svc/16000048",
            "web",
            "FARGATE",
            "us-east-1a",
            "v1.4.0",
        ] {
            assert_eq!(string(s), s, "plain");
        }
    }

    #[test]
    fn documents_nest_in_block_style() {
        let v = json!({"items": [{"a": 1, "b": ["x", {}], "c": null}, []], "empty": {}, "at": "2026-12-01"});
        assert_eq!(
            to_string(&v),
            "at: \"2026-12-01\"\nempty: {}\nitems:\n  - a: 1\n    b:\n      - x\n      - {}\n    c: null\n  - []\n"
        );
        let nested = json!([[1, [2]], {"k": [{"x": "y"}]}]);
        assert_eq!(to_string(&nested), "- - 1\n  - - 2\n- k:\n    - x: \"y\"\n");
        assert_eq!(to_string(&json!([])), "[]\n");
        assert_eq!(to_string(&json!("yes")), "\"yes\"\n");
    }
}
