//! Programs that would break the safety model (docs/SAFETY.md) in safe code must
//! not compile: aliasing `&mut` through two handles, plain views without `unsafe`,
//! a `SharedSlice` outliving its segment, a loan used after its publish, a message
//! read as a plain slice or freed by its key. Each case is a file of
//! `tests/compile_fail/`, with the compiler's expected complaint beside it
//! (`.stderr`; regenerate with `TRYBUILD=overwrite` after a toolchain change, and
//! read the diff).
//!
//! Only with the default features: the compiler names `SharedMemory` by its short
//! path only while no other public item shares the name, and the `worker` feature
//! brings one (`Transport::SharedMemory`), so the expected output depends on it.

#![cfg(feature = "worker")]

#[test]
fn unsound_programs_do_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/compile_fail/*.rs");
}
