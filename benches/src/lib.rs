//! Benchmarks and load tools for relay (see `benches/` and `src/bin/`).
