//! business-logic: deliberately slow and fast endpoints doing real work on a
//! database (SQLite or PostgreSQL), with traces, logs and metrics that make
//! the slowness easy to find.

pub mod canary;
pub mod catalog;
pub mod db;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod startup;

/// The modules' `crate::` references form no cycle: `settings` and `db` sit
/// at the bottom (plain data, storage), the endpoints on top. A cycle makes
/// every module in it one unit to read, test and change.
#[cfg(test)]
mod module_graph {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    /// Module → the modules of this crate its code (not its comments) names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let sources: BTreeMap<String, String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "rs"))
            .map(|path| {
                let module = path.file_stem().unwrap().to_string_lossy().into_owned();
                (module, std::fs::read_to_string(&path).unwrap())
            })
            .filter(|(module, _)| module != "lib" && module != "main")
            .collect();
        sources
            .iter()
            .map(|(module, text)| {
                let code: String = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let named = referenced(&code)
                    .into_iter()
                    .filter(|other| other != module && sources.contains_key(other))
                    .collect();
                (module.clone(), named)
            })
            .collect()
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
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            module: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
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
    fn the_modules_form_no_cycle() {
        let graph = graph();
        assert!(
            graph.contains_key("settings") && graph.contains_key("db"),
            "{graph:?}"
        );
        assert_eq!(cycle(&graph), None, "module graph: {graph:#?}");
    }

    #[test]
    fn settings_and_storage_use_no_other_module() {
        let graph = graph();
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
        let graph: BTreeMap<String, BTreeSet<String>> = [
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
}
