"""Benchmark machinery behind `python -m qwire bench` and `benchmarks/`: workloads (the data),
peers (the libraries compared), runner (the timing) and report (table, JSON, plot)."""
