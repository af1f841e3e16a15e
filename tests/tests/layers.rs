//! The library's import graph against the map in `shared/src/lib.rs`: every
//! `crate::MODULE` a module names (in `use` lines and in paths) is of its
//! own tier or a lower one, and no modules import each other in a loop.
//! The map is the source: its modules, top to bottom, tiers split by `|`.
//! Run alone: `cargo test -p css-tests --test layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src")
}

/// Module -> tier (0 is the top) from lib.rs's map.
fn tiers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let map = lib
        .split_once("//! ```text\n")
        .and_then(|(_, rest)| rest.split_once("//! ```"))
        .map(|(m, _)| m.to_string())
        .expect("lib.rs has the map");
    let mut tier = 0;
    let mut out = BTreeMap::new();
    for line in map.lines() {
        let line = line.trim_start_matches("//!");
        if line.trim() == "|" {
            tier += 1;
            continue;
        }
        // A module starts its line (one space after `//!`); descriptions
        // continue indented.
        if let Some(name) = line.strip_prefix(' ').filter(|l| !l.starts_with(' ')) {
            let name = name.split_whitespace().next().unwrap_or_default();
            out.insert(name.to_string(), tier);
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the modules it names as `crate::X` (comments left out).
fn imports(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in all {
        let rel = file.strip_prefix(src()).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&module) {
            continue; // lib.rs, and `testing` (test-only helpers)
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) && name != module {
                    out.entry(module.clone()).or_default().insert(name);
                }
            }
            // `use crate::{a, b::c}` names several.
            if let Some(group) = code.trim().strip_prefix("use crate::{") {
                for part in group.split([',', '}']) {
                    let name = part.trim().split("::").next().unwrap_or_default();
                    if modules.contains(name) && name != module {
                        out.entry(module.clone())
                            .or_default()
                            .insert(name.to_string());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_one_and_none_in_a_loop() {
    let tiers = tiers();
    let modules: BTreeSet<String> = tiers.keys().cloned().collect();
    // Every module of the crate is on the map.
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(modules.contains(name), "{name} is not on lib.rs's map");
        }
    }
    let graph = imports(&modules);
    let mut upward = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if tiers[to] < tiers[from] {
                upward.push(format!(
                    "{from} (tier {}) -> {to} (tier {})",
                    tiers[from], tiers[to]
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports of a higher tier:\n{}",
        upward.join("\n")
    );

    // No loop: a topological order exists.
    let mut indegree: BTreeMap<&String, usize> = modules.iter().map(|m| (m, 0)).collect();
    for tos in graph.values() {
        for to in tos {
            *indegree.get_mut(to).expect("module") += 1;
        }
    }
    let mut ready: Vec<&String> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(m, _)| *m)
        .collect();
    let mut done = 0;
    while let Some(m) = ready.pop() {
        done += 1;
        for to in graph.get(m).into_iter().flatten() {
            let d = indegree.get_mut(to).expect("module");
            *d -= 1;
            if *d == 0 {
                ready.push(to);
            }
        }
    }
    let looped: Vec<&String> = indegree
        .iter()
        .filter(|(_, d)| **d > 0)
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(
        done,
        modules.len(),
        "modules in an import loop: {looped:?}\n{graph:#?}"
    );
    eprintln!(
        "{} modules, {} imports between them",
        modules.len(),
        graph.values().map(BTreeSet::len).sum::<usize>()
    );
}

/// The map is read as written: every module, each in its tier.
#[test]
fn the_map_parser_reads_every_module_and_tier() {
    let tiers = tiers();
    assert_eq!(tiers["lambda"], 0);
    assert_eq!(tiers["api"], 0);
    assert_eq!(tiers["ingest"], 1);
    assert_eq!(tiers["store"], 2);
    assert_eq!(tiers["metrics"], 3);
    assert_eq!(tiers["model"], 3);
    assert_eq!(tiers["backup"], 1);
    assert_eq!(tiers["health"], 1);
    assert_eq!(tiers.len(), 20, "{tiers:?}");
}

/// Every citation of the reference in the code (`docs/reference.md#anchor`)
/// lands on a heading of it, and nothing cites a document the repository
/// does not have.
#[test]
fn every_citation_of_the_reference_lands_on_a_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reference =
        std::fs::read_to_string(root.join("docs/reference.md")).expect("docs/reference.md");
    // GitHub's anchors: lower case, spaces to dashes, punctuation dropped.
    let anchors: BTreeSet<String> = (reference.lines())
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let mut sources = Vec::new();
    for dir in [
        "shared/src",
        "client/src",
        "server/src",
        "functions",
        "tests",
    ] {
        files(&root.join(dir), &mut sources);
    }
    sources.push(root.join("openapi.yaml"));
    let mut cited = 0;
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(concat!("SPEC ", "§")),
            "{} cites a SPEC the repository does not have",
            file.display()
        );
        for (at, _) in text.match_indices("docs/reference.md#") {
            let anchor: String = text[at + "docs/reference.md#".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            if anchor.is_empty() || anchor == "anchor" {
                continue; // this test's own text
            }
            assert!(
                anchors.contains(&anchor),
                "{}: #{anchor} is no heading of docs/reference.md ({anchors:?})",
                file.display()
            );
            cited += 1;
        }
    }
    assert!(cited >= 15, "{cited} citations");
}
