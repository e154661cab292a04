//! The layout's rules, checked on the source tree (docs/architecture.md):
//! - no crate depends on a crate of its own layer or above (core < ingest < batch, streaming,
//!   serving, executor < scheduler < cli);
//! - no two source files of a crate import each other;
//! - no library file is over 800 lines, and the scheduler crate is the scheduler process only
//!   (at most 2,000 lines);
//! - the README's map of the code names every crate folder, and every folder it names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each workspace crate's folder and layer: a crate may depend only on crates of lower layers.
const LAYERS: [(&str, u8); 11] = [
    ("core", 0),
    ("ingest", 1),
    ("batch", 2),
    ("streaming", 2),
    ("serving", 2),
    ("executor", 2),
    ("testkit", 2),
    ("sqllogictest", 2),
    ("scheduler", 3),
    ("cli", 4),
    ("bench", 5),
];

fn layer(folder: &str) -> Option<u8> {
    LAYERS.iter().find(|(f, _)| *f == folder).map(|(_, l)| *l)
}

/// The workspace's member folders, from the root Cargo.toml.
fn members() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("TOML");
    manifest["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("a folder").to_string())
        .collect()
}

/// `ember-x` crates a member depends on (normal and build dependencies; dev-dependencies are
/// tests, which may use any crate), as folders.
fn ember_dependencies(folder: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join(folder).join("Cargo.toml")).expect("member manifest");
    let manifest: toml::Table = toml::from_str(&text).expect("TOML");
    let mut deps = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(table) = manifest.get(section).and_then(|t| t.as_table()) {
            for name in table.keys().filter(|k| k.starts_with("ember-")) {
                deps.push(name.trim_start_matches("ember-").to_string());
            }
        }
    }
    deps
}

#[test]
fn no_crate_depends_on_its_layer_or_above() {
    let members = members();
    for m in &members {
        assert!(
            layer(m).is_some(),
            "workspace member {m} has no layer in this test"
        );
    }
    let mut wrong = Vec::new();
    for m in &members {
        for dep in ember_dependencies(m) {
            let (Some(mine), Some(theirs)) = (layer(m), layer(&dep)) else {
                wrong.push(format!("{m} depends on ember-{dep}, which has no layer"));
                continue;
            };
            if theirs >= mine {
                wrong.push(format!(
                    "{m} (layer {mine}) depends on {dep} (layer {theirs})"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a source file (`src/engine/batch.rs` → `["engine", "batch"]`; `lib.rs`,
/// `main.rs` → `[]`; `mod.rs` → its folder).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file of the deepest module named by a path's first segments, if any.
fn file_of(
    src: &Path,
    modules: &BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<PathBuf> {
    let _ = src;
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

/// `use` trees expanded into paths: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(&tree).to_string()];
    };
    let prefix = &tree[..open];
    // Not a use tree after all (e.g. "; use `x`" inside a string literal).
    let Some(close) = tree.rfind('}').filter(|&close| close > open) else {
        return Vec::new();
    };
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The paths a file mentions through `crate::`, `super::` and `self::`, resolved to module
/// paths. The code after `#[cfg(test)]` (unit tests, at the bottom by convention) is left out.
fn referenced(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    // `use` statements, which may span lines and nest braces.
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(tree) = statement
            .strip_prefix("pub use ")
            .or_else(|| statement.strip_prefix("pub(crate) use "))
            .or_else(|| statement.strip_prefix("use "))
        else {
            continue;
        };
        // A use tree starts with a path segment; anything else is text that only looks like one.
        if !tree.starts_with(|c: char| c.is_alphabetic() || c == '_' || c == ':') {
            continue;
        }
        paths.extend(expand(tree));
    }
    // Paths written inline (`crate::kafka::READ_TIMEOUT`).
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        paths.push(path);
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let segments: Vec<String> = p
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let (first, rest) = segments.split_first()?;
            let mut base: Vec<String> = match first.as_str() {
                "crate" => Vec::new(),
                "self" => module.to_vec(),
                "super" => module[..module.len().checked_sub(1)?].to_vec(),
                _ => return None,
            };
            let mut rest = rest.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest.remove(0);
            }
            base.extend(rest);
            Some(base)
        })
        .collect()
}

#[test]
fn no_two_files_import_each_other() {
    let mut cycles = Vec::new();
    for member in members() {
        let src = repo().join(&member).join("src");
        let files = rust_files(&src);
        let modules: BTreeMap<Vec<String>, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let mut edges: BTreeSet<(PathBuf, PathBuf)> = BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("source");
            let module = module_of(&src, file);
            for path in referenced(&module, &text) {
                if let Some(target) = file_of(&src, &modules, &path)
                    && &target != file
                {
                    edges.insert((file.clone(), target));
                }
            }
        }
        for (a, b) in &edges {
            if a < b && edges.contains(&(b.clone(), a.clone())) {
                cycles.push(format!("{} <-> {}", a.display(), b.display()));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other: {cycles:#?}"
    );
}

#[test]
fn library_files_stay_small_and_the_scheduler_is_the_process_only() {
    let mut long = Vec::new();
    for member in members() {
        for file in rust_files(&repo().join(&member).join("src")) {
            let lines = std::fs::read_to_string(&file)
                .expect("source")
                .lines()
                .count();
            if lines > 800 {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "files over 800 lines: {long:#?}");
    let scheduler: usize = rust_files(&repo().join("scheduler/src"))
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("source").lines().count())
        .sum();
    assert!(
        scheduler <= 2_000,
        "scheduler/src has {scheduler} lines; it should hold the scheduler process only"
    );
}

#[test]
fn the_readmes_map_of_the_code_matches_the_folders() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let map = readme
        .split("## Map of the code")
        .nth(1)
        .expect("a `## Map of the code` section")
        .split("\n## ")
        .next()
        .unwrap_or("");
    let named: BTreeSet<String> = map
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    for folder in &named {
        assert!(
            repo().join(folder).exists(),
            "the README's map names {folder}/, which does not exist"
        );
    }
    for member in members() {
        assert!(
            named.contains(&member),
            "the README's map does not name the crate folder {member}/"
        );
    }
}
