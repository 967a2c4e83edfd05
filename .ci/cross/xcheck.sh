#!/usr/bin/env bash
# Type-check (no link, no run) the crate for Windows-MSVC and macOS from Linux,
# with Debian's Rust (rustc-web) + its std source and cargo's -Zbuild-std. Any cargo check
# arguments pass through (`./dev cross` names the packages).
set -euo pipefail
if [ ! -x /usr/bin/cargo ] || [ ! -e /usr/lib/rustlib/src/rust/library/Cargo.lock ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rustc-web cargo-web rust-web-src
fi
# The std source must be the compiler's own version.
v=$(/usr/bin/rustc -V | cut -d' ' -f2)
case "$(readlink /usr/lib/rustlib/src/rust)" in
  *"rustc-$v") ;;
  *) echo "xcheck: rust-web-src does not match rustc $v" >&2; exit 1 ;;
esac
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=target/xcheck   # apart from the rustup toolchain's target/
/usr/bin/cargo check --locked -Zbuild-std --all-targets \
  --target x86_64-pc-windows-msvc \
  --target aarch64-apple-darwin \
  --target x86_64-apple-darwin "$@"
