//! Benches only: see `benches/` and `compare.py`.
