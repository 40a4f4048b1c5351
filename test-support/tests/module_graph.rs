//! No import circle in any crate of the workspace: within each crate, the
//! top-level modules' `crate::` references form no cycle. A cycle makes
//! every module in it one unit to read, test and change. (A module in a
//! folder counts as its top-level module: `traces/zipkin/fixups.rs` is
//! `traces`.)
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the other modules of its crate its code (not its comments) names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Each crate's `src` folder: every workspace folder with a `Cargo.toml` and a `src`.
fn crates() -> Vec<(String, PathBuf)> {
    let mut crates: Vec<_> = std::fs::read_dir(workspace())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.join("src").is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            (name, dir.join("src"))
        })
        .collect();
    crates.sort();
    crates
}

/// The `.rs` files under `dir`, with their paths relative to `root`.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_owned(), text));
        }
    }
}

/// The crate's module graph; the crate roots (`lib.rs`, `main.rs`) and
/// `src/bin` (crates of their own) are left out.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    sources(src, src, &mut files);
    let module_of = |path: &Path| -> Option<String> {
        let first = path.components().next()?.as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        (!["lib", "main", "bin"].contains(&module.as_str())).then_some(module)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| module_of(p)).collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (path, text) in &files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let named = referenced(&code)
            .into_iter()
            .filter(|other| *other != module && modules.contains(other));
        graph.get_mut(&module).unwrap().extend(named);
    }
    graph
}

/// The first segment after every `crate::`, including each name of a
/// `crate::{a, b::c}` group.
fn referenced(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top level: commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.insert(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// A cycle of `graph`, as the modules on it, if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle() {
    let crates = crates();
    let names: Vec<&str> = crates.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["business-logic", "front-end", "service-kit", "telemetry"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let circles: Vec<String> = crates
        .iter()
        .filter_map(|(name, src)| {
            let graph = graph(src);
            cycle(&graph).map(|c| format!("{name}: {}\n{graph:#?}", c.join(" -> ")))
        })
        .collect();
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}

#[test]
fn settings_and_storage_of_business_logic_use_no_other_module() {
    let graph = graph(&workspace().join("business-logic/src"));
    assert!(graph["settings"].is_empty(), "{:?}", graph["settings"]);
    assert!(graph["db"].is_empty(), "{:?}", graph["db"]);
}

#[test]
fn the_check_finds_a_cycle_and_grouped_imports() {
    assert_eq!(
        referenced(
            "use crate::db::Database;\nlet x = crate::canary::X;\nuse crate::{problem::{self, E}, routes};"
        ),
        ["canary", "db", "problem", "routes"]
            .map(String::from)
            .into()
    );
    let graph: Graph = [
        ("canary", &["db"][..]),
        ("db", &["settings"]),
        ("settings", &["canary"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.iter().map(|t| (*t).to_owned()).collect()))
    .collect();
    assert_eq!(
        cycle(&graph),
        Some(
            ["canary", "db", "settings", "canary"]
                .map(String::from)
                .to_vec()
        )
    );
}
