//! The Rust code blocks of README.md and docs/*.md, compiled as written (by
//! `build.rs`). `doc_blocks NAME` runs the block named `<file>:<line>`;
//! `doc_blocks --list` prints every name. `tests/doc_runner.py` runs them in
//! document order beside the Python blocks.

use std::process::ExitCode;

type BlockResult = Result<(), Box<dyn std::error::Error>>;

/// A block's name (`<file>:<line>`) and the function that runs it.
type Block = (&'static str, fn() -> BlockResult);

/// What a block's `main` may return: `()` or a `Result`.
trait IntoBlockResult {
    fn into_block_result(self) -> BlockResult;
}

impl IntoBlockResult for () {
    fn into_block_result(self) -> BlockResult {
        Ok(())
    }
}

impl<E: Into<Box<dyn std::error::Error>>> IntoBlockResult for Result<(), E> {
    fn into_block_result(self) -> BlockResult {
        self.map_err(Into::into)
    }
}

fn into_result(value: impl IntoBlockResult) -> BlockResult {
    value.into_block_result()
}

include!(concat!(env!("OUT_DIR"), "/doc_blocks.rs"));

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for (name, _) in BLOCKS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        [name] => match BLOCKS.iter().find(|(n, _)| n == name) {
            Some((_, run)) => match run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{name}: error: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("no Rust block named {name:?} (try --list)");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: doc_blocks <file>:<line> | --list");
            ExitCode::from(2)
        }
    }
}
