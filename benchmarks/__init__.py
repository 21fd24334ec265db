"""`python -m benchmarks`: the benchmark suite, which lives in `console/bench/` so that an
installed switchboard can run it (`switchboard bench`)."""
