//! Models only: see `tests/`.
