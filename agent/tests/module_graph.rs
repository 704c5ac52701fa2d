//! The agent's modules form a layered graph, not a circle.
//!
//! This test reads every file under `agent/src/`, collects the `crate::<module>` paths
//! its code names (`use` statements, grouped `use crate::{a, b}` and inline paths), and
//! builds the graph between top-level modules (`sources::simulated` counts as
//! `sources`). Comments and test code (`tests.rs`, `*_tests.rs`, everything from a
//! file's `#[cfg(test)]` on) are left out: a doc link or a test helper does not make one
//! module need another at run time.
//!
//! Two rules are checked:
//! * the graph has no cycle; a failure prints the cycle, each edge with the file and
//!   line that makes it;
//! * only the wiring (`topology`, `cli`) imports the top-level `config`: a component
//!   gets its own config type and never the whole agent's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules allowed to read the top-level configuration: the wiring, the CLI, and the
/// remote-configuration supervisor (it decides which whole configuration the wiring runs).
const READS_THE_TOP_LEVEL_CONFIG: &[&str] = &["cli", "topology", "remote"];

/// An edge `from → to`, with the first place in the code that makes it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read agent/src") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`sources/simulated/scene.rs` → `sources`),
/// or `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("file under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn is_test_file(file: &Path) -> bool {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem == "tests" || stem.ends_with("_tests")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules one line of code names through `crate::`.
fn modules_named(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        // `chitti_agent::crate::` does not exist; a preceding identifier character means
        // a longer name that merely ends in `crate` (e.g. `my_crate::`).
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each entry at depth 0.
            let mut depth = 0;
            let mut entry_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.push(ident_at(&group[i..]).to_string());
                        entry_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.push(name.to_string());
            }
        }
    }
    found
}

fn agent_module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = top_module(&src, &file) else {
            continue;
        };
        graph.entry(from.clone()).or_default();
        if is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in modules_named(line) {
                if to == from {
                    continue;
                }
                let place = format!("{}:{}", file.strip_prefix(&src).unwrap().display(), n + 1);
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(place);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the list of its modules (the first repeated at the end).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::OnPath);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let start = path.iter().position(|m| m == next).expect("on path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn the_agent_modules_import_each_other_without_a_cycle() {
    let graph = agent_module_graph();
    assert!(
        graph.contains_key("topology") && graph.contains_key("config"),
        "the scan found no agent modules: {graph:#?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("  {} → {}   ({})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!(
            "the agent's modules import each other in a cycle: {}\n{}",
            cycle.join(" → "),
            edges.join("\n")
        );
    }
}

#[test]
fn only_the_wiring_imports_the_top_level_config() {
    let graph = agent_module_graph();
    let offenders: BTreeSet<String> = graph
        .iter()
        .filter(|(from, _)| !READS_THE_TOP_LEVEL_CONFIG.contains(&from.as_str()))
        .filter_map(|(from, edges)| edges.get("config").map(|at| format!("{from} ({at})")))
        .collect();
    assert!(
        offenders.is_empty(),
        "components import the top-level config (give them their own config type): {offenders:#?}"
    );
}

#[test]
fn the_scanner_reads_grouped_and_inline_paths() {
    assert_eq!(
        modules_named("use crate::{analysis::Detection, sources::{A, B}, health};"),
        ["analysis", "sources", "health"]
    );
    assert_eq!(
        modules_named("let x = crate::config::nominal(); my_crate::y::z"),
        ["config"]
    );
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(f, t)| (f.into(), [(t.into(), String::new())].into()))
        .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
