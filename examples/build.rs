//! Compiles every ```rust block of README.md and docs/*.md into the `doc_blocks`
//! binary, so that the documentation's Rust code is type-checked with every build
//! and run, as written, by `tests/doc_runner.py` (in `./dev test`).
//!
//! A block that defines `fn main` becomes a module whose `main` is called; any other
//! block becomes the body of a function returning `Result<(), Box<dyn Error>>`, so
//! it may use `?`. Blocks are named `<file>:<line of the opening fence>`, the same
//! names the runner finds by reading the Markdown with the same rule: a fence starts
//! at column 0 with ```lang and ends at a line that is exactly ```.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("examples/ is in the repo");
    let mut documents = vec![PathBuf::from("README.md")];
    println!("cargo:rerun-if-changed={}", root.join("README.md").display());
    println!("cargo:rerun-if-changed={}", root.join("docs").display());
    if let Ok(entries) = fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .map(|p| Path::new("docs").join(p.file_name().expect("a file")))
            .collect();
        docs.sort();
        documents.extend(docs);
    }

    let mut modules = String::new();
    let mut table = String::new();
    for document in &documents {
        let path = root.join(document);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).expect("a readable Markdown file");
        let name = document.to_str().expect("a UTF-8 path").replace('\\', "/");
        for (index, (line, code)) in rust_blocks(&text).into_iter().enumerate() {
            let module = format!("{}_{index}", ident(&name));
            let body = if code.contains("fn main(") {
                format!(
                    "{code}\npub(crate) fn run() -> crate::BlockResult {{ crate::into_result(main()) }}\n"
                )
            } else {
                format!(
                    "pub(crate) fn run() -> crate::BlockResult {{\n{code}\n#[allow(unreachable_code)]\nOk(())\n}}\n"
                )
            };
            writeln!(
                modules,
                "// {name}:{line}\n#[allow(unused, clippy::all)]\nmod {module} {{\n{body}}}\n"
            )
            .expect("writing to a String");
            writeln!(table, "    (\"{name}:{line}\", {module}::run),")
                .expect("writing to a String");
        }
    }
    let generated = format!(
        "{modules}\n/// Every block: its name and the function that runs it.\n\
         pub(crate) const BLOCKS: &[crate::Block] = &[\n{table}];\n"
    );
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("doc_blocks.rs");
    fs::write(out, generated).expect("OUT_DIR is writable");
}

/// The ```rust blocks of a Markdown text: the 1-based line of each opening fence
/// and the code.
fn rust_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let lang = info.split([',', ' ']).next().unwrap_or("");
                    open = Some((number + 1, lang == "rust", String::new()));
                }
            }
            Some((start, is_rust, code)) => {
                if line == "```" {
                    if *is_rust {
                        blocks.push((*start, std::mem::take(code)));
                    }
                    open = None;
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    blocks
}

/// A Rust identifier made from a document's path.
fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect()
}
