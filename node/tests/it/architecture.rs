//! The rule of the house for `node/src`: no two modules import each other,
//! directly or through others. Checked over the source text, so a cycle
//! fails the build's tests instead of waiting for someone to draw the
//! graph.
//!
//! Two kinds of graph are checked: the node's top-level modules (a file,
//! or a directory with everything in it: `cache`, `runtime`, ...), linked
//! by every `crate::` path outside test code and comments; and, inside each
//! directory at any depth, its members (files, and subdirectories with
//! everything in them: `cache/disk/`), linked by `super::` and `crate::`
//! paths that lead from one member to another (the directory's `mod.rs`,
//! which declares and re-exports its children, is left out of its own
//! graph, and counts as its directory in the one above).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's text without its `#[cfg(test)]` module (always last here)
/// and without comment lines (a doc link is not an import).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a text names after `prefix` (`crate::`, `super::`):
/// each as its segments up to the first one that is not a module name.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        // `crate::` inside a longer name (`edge_crate::`) is not ours.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        found.extend(segments_of(&text[at + prefix.len()..]));
    }
    found
}

/// The module paths at the start of `rest` (what follows `crate::` or
/// `super::`).
fn segments_of(rest: &str) -> Vec<Vec<String>> {
    let mut segments: Vec<String> = Vec::new();
    for segment in rest.split("::") {
        let ident: String = segment
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        let whole = ident.len() == segment.len();
        segments.push(ident);
        // `full_body(b); use super::x`: the path ended in this segment.
        if !whole {
            break;
        }
    }
    // `use crate::{a, b}` and `crate::a::{x, y}` list several.
    if segments.is_empty() || rest.starts_with('{') {
        braced(rest)
            .into_iter()
            .map(|listed| vec![listed])
            .collect()
    } else {
        vec![segments]
    }
}

/// The `super::` paths of a text, each with how many levels it climbs
/// (`super::super::store` climbs two).
fn super_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("super::") {
        let before = &text[..at];
        if before.ends_with("super::")
            || before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let mut rest = &text[at..];
        let mut levels = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            levels += 1;
            rest = after;
        }
        found.extend(segments_of(rest).into_iter().map(|path| (levels, path)));
    }
    found
}

fn braced(rest: &str) -> Vec<String> {
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .map(|s| s.trim().split("::").next().unwrap_or("").to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The names a text takes straight from the crate root (`crate::Name`,
/// `crate::{Name, module}`): whatever is not a module.
fn root_names(text: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(body) => body[..body.find('}').unwrap_or(body.len())]
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or(""))
                .collect(),
            None => vec![
                &rest[..rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())],
            ],
        };
        found.extend(
            names
                .into_iter()
                .filter(|n| !n.is_empty() && !modules.contains(*n))
                .map(str::to_string),
        );
    }
    found
}

/// Links `module` to `target` (module paths) in the graph of every
/// directory holding both in different members: `cache::disk::write` ->
/// `cache::store::Entry` links `disk` -> `store` in `cache`.
fn link(
    graphs: &mut BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    module: &[String],
    target: Vec<String>,
) {
    for depth in 1..module.len() {
        if target.len() <= depth || module[..depth] != target[..depth] {
            return;
        }
        if module[depth] != target[depth] {
            graphs
                .entry(module[..depth].join("/"))
                .or_default()
                .entry(module[depth].clone())
                .or_default()
                .insert(target[depth].clone());
            return;
        }
    }
}

#[test]
fn no_two_node_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let top_level: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            let first = rel.components().next()?.as_os_str().to_str()?;
            let name = first.trim_end_matches(".rs");
            (name != "lib" && name != "main").then(|| name.to_string())
        })
        .collect();
    assert!(top_level.contains("cache") && top_level.contains("runtime"));

    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_str().unwrap().trim_end_matches(".rs").to_string())
            .collect();
        let own = parts[0].clone();
        if own == "lib" || own == "main" {
            continue;
        }
        // The file's module path: `cache/disk/mod.rs` is cache::disk.
        let mut module = parts.clone();
        if module.len() > 1 && module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        let code = code_of(file);
        // The crate root imports every module: a module that takes a name
        // from it closes a cycle through it.
        let from_root = root_names(&code, &top_level);
        assert!(
            from_root.is_empty(),
            "{} takes {from_root:?} from the crate root; give them a module of their own",
            rel.display()
        );
        for path in paths_after(&code, "crate::") {
            let target = &path[0];
            if top_level.contains(target) && *target != own {
                modules
                    .entry(own.clone())
                    .or_default()
                    .insert(target.clone());
            }
            // crate::dir::member from inside dir.
            link(&mut siblings, &module, path);
        }
        for (levels, path) in super_paths(&code) {
            // `super` of `a/b.rs` and of `a/b/mod.rs` (module a::b) is a.
            let Some(base) = module.len().checked_sub(levels) else {
                continue;
            };
            let mut target = module[..base].to_vec();
            target.extend(path);
            link(&mut siblings, &module, target);
        }
    }
    if let Some(cycle) = find_cycle(&modules) {
        panic!("node/src modules import each other: {}", cycle.join(" -> "));
    }
    for (dir, graph) in &mut siblings {
        // Only members count (a file, or a subdirectory); the directory's
        // own mod.rs is its parent, not a member.
        for targets in graph.values_mut() {
            targets.retain(|t| {
                src.join(dir).join(format!("{t}.rs")).exists() || src.join(dir).join(t).is_dir()
            });
            targets.remove("mod");
        }
        if let Some(cycle) = find_cycle(graph) {
            panic!(
                "files of node/src/{dir} import each other: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_check_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    assert!(find_cycle(&graph).is_some());
    let paths = paths_after(
        "use crate::{cache, runtime::x};\nlet y = crate::body::full_body(b);\nuse super::host::Host;",
        "crate::",
    );
    assert_eq!(
        paths,
        vec![
            vec!["cache".to_string()],
            vec!["runtime".to_string()],
            vec!["body".to_string(), "full_body".to_string()],
        ]
    );
    // `super::super::x` climbs two levels and is one path, not two.
    assert_eq!(
        super_paths("use super::super::store::Entry;\nuse super::{format, index};"),
        vec![
            (
                2,
                vec!["store".to_string(), "Entry".to_string()][..1].to_vec()
            ),
            (1, vec!["format".to_string()]),
            (1, vec!["index".to_string()]),
        ]
    );
    // A subdirectory is one member of its parent's graph, and has its own.
    let mut graphs = BTreeMap::new();
    let module = |m: &str| m.split('/').map(String::from).collect::<Vec<_>>();
    link(
        &mut graphs,
        &module("cache/disk/write"),
        module("cache/store/entry"),
    );
    link(
        &mut graphs,
        &module("cache/disk/write"),
        module("cache/disk/format/meta"),
    );
    link(&mut graphs, &module("cache/disk"), module("cache/tiers"));
    link(&mut graphs, &module("cache/layer"), module("runtime/x"));
    assert_eq!(
        graphs["cache"]["disk"],
        BTreeSet::from(["store".to_string(), "tiers".to_string()])
    );
    assert_eq!(
        graphs["cache/disk"]["write"],
        BTreeSet::from(["format".to_string()])
    );
    assert_eq!(
        graphs.len(),
        2,
        "a link out of the top-level module is not a member's"
    );
}
