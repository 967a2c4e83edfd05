//! The crate's modules form layers, each using only the ones below it (see the
//! crate docs and DESIGN.md): this test reads every file of `src/` and fails on a
//! `crate::` path that reaches a module its module may not use, and on a module
//! that has no place in the table yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every module of `src/` (a file, or a folder with all its files), bottom up, with
/// the modules it may use. A module may use only modules listed before it, so the
/// picture stays a tree from `sys` and `error` upward.
const LAYERS: &[(&str, &[&str])] = &[
    ("sys", &[]),
    // Errors recognise a few OS errors by what sys says they mean.
    ("error", &["sys"]),
    ("owner", &["sys"]),
    ("record", &["sys", "owner"]),
    ("name", &["error", "sys"]),
    // Reclaim knows records and names, never segments: segments call it.
    ("reclaim", &["error", "sys", "owner", "record", "name"]),
    ("segment", &["error", "sys", "owner", "name", "record", "reclaim"]),
    ("options", &["error", "sys", "owner", "name", "record", "reclaim", "segment"]),
    // Typed access that no reference spans; the views and arrays hand it out.
    ("shared_slice", &["error", "segment"]),
    ("view", &["error", "segment", "shared_slice"]),
    ("array", &["error", "segment", "options", "record", "shared_slice"]),
    ("sync", &["error", "sys", "owner", "record", "segment"]),
    ("channel", &["error", "sys", "owner", "record", "segment", "shared_slice", "sync"]),
    ("worker", &["error", "sys", "name", "segment", "options", "array", "channel"]),
    // The operator's view reads every kind of segment.
    (
        "inspect",
        &[
            "error", "sys", "name", "record", "segment", "options", "view", "array", "sync",
            "channel",
        ],
    ),
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` belongs to: its first path component.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// The code of a file without its comments (doc links name other modules too, but
/// only code makes a dependency).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What lib.rs re-exports at the crate root, by name: `crate::SharedMemory` is a
/// use of `segment`.
fn root_reexports() -> BTreeMap<String, String> {
    let lib = code(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else { continue };
        let Some((module, items)) = path.split_once("::") else { continue };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            names.insert(item.to_owned(), module.trim().to_owned());
        }
    }
    names
}

/// The first path segment after each `crate::` in `code`, with its line number
/// (every item of a `crate::{a, b::c}` group, which may span lines).
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in a macro, or a longer name ending in "crate"
        }
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push((line_of(at), ident(rest)));
            continue;
        };
        // The first segment of each top-level item: `{a::{b, c}, d}` names a and d.
        let (mut depth, mut item_start) = (0usize, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    item_start = false;
                    found.push((line_of(at), ident(&group[i..])));
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn the_table_is_bottom_up() {
    for (i, (module, allowed)) in LAYERS.iter().enumerate() {
        for used in *allowed {
            let below = LAYERS[..i].iter().any(|(m, _)| m == used);
            assert!(below, "{module} may use {used}, which is not listed below it");
        }
    }
}

#[test]
fn no_module_reaches_up() {
    let reexports = root_reexports();
    let modules: Vec<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" {
            continue; // the root declares and re-exports everything
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| *m == module) else {
            wrong.push(format!(
                "{}: module `{module}` has no place in LAYERS (tests/layers.rs): add it \
                 above the modules it uses",
                file.strip_prefix(src()).unwrap().display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, first) in crate_paths(&code(&text)) {
            let used = if modules.contains(&first.as_str()) {
                first.clone()
            } else if let Some(module) = reexports.get(&first) {
                module.clone()
            } else {
                wrong.push(format!(
                    "{}:{line}: crate::{first} is no module I know",
                    file.strip_prefix(src()).unwrap().display()
                ));
                continue;
            };
            if used != module && !allowed.contains(&used.as_str()) {
                wrong.push(format!(
                    "{}:{line}: `{module}` uses crate::{first} (module `{used}`); it may use \
                     only {allowed:?}",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layers broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_what_it_must() {
    // The checker itself: grouped, nested and root paths are all found.
    let code = "use crate::error::{Error, Result};\nuse crate::{\n    segment::{X, Y},\n    sys,\n};\n\
                let n = crate::unique_name(\"x\");\nmacro_rules! m { () => { $crate::view } }";
    let found: Vec<(usize, String)> = crate_paths(code);
    let found: Vec<(usize, &str)> = found.iter().map(|(l, n)| (*l, n.as_str())).collect();
    assert_eq!(found, [(1, "error"), (2, "segment"), (2, "sys"), (6, "unique_name")]);
    assert_eq!(root_reexports().get("SharedMemory").map(String::as_str), Some("segment"));
    assert_eq!(root_reexports().get("unique_name").map(String::as_str), Some("name"));
}
