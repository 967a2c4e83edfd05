//! The `shmbridge` command (see the library's docs, or `shmbridge --help`).

fn main() {
    std::process::exit(shmbridge_cli::run(std::env::args_os()));
}
