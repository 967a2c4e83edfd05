#!/usr/bin/env bash
# Builds the workspace's tests for x86_64-pc-windows-gnu on this Linux machine and runs them
# under Wine, offline. Run from the repo root:
#
#   .ci/cross/wine-test.sh                 # cargo test -p shmbridge for Windows, under Wine
#   .ci/cross/wine-test.sh --no-run        # build only
#   .ci/cross/wine-test.sh -p OTHER ...    # any cargo test arguments
#
# `./dev cross` runs it with the core's tests that need no Python (see there).
#
# Route: Debian's rustc-web/cargo-web 1.96 (bookworm-security) + rust-web-src with -Zbuild-std,
# mingw-w64 as linker, Debian's Wine 8.0 (wine64) as runner. Wine 8.0 lacks
# bcryptprimitives.dll, which Rust std >= 1.78 imports; wine-runner.sh beside this file adds a
# 12 KB stand-in to the Wine prefix on first use. First build ~65 s, rebuilds seconds, a test
# exe ~0.1 s under a warm Wine. The build goes to target/windows-gnu and the Wine prefix to
# target/wine-prefix, so a warm CI reuses both; set CARGO_TARGET_DIR or WINEPREFIX to move them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
need=()
for p in rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine64; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$here/wine-runner.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/windows-gnu}"
: "${WINEPREFIX:=$PWD/target/wine-prefix}"; export WINEPREFIX
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(-p shmbridge)
status=0
/usr/bin/cargo test --locked -Zbuild-std --target x86_64-pc-windows-gnu --no-fail-fast "${args[@]}" || status=$?
/usr/lib/wine/wineserver -k >/dev/null 2>&1 || true
exit $status
