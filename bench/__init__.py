"""Benchmarks: `python -m bench.<name>` prints a table and writes bench/results/<name>.json; `python -m
bench.run` runs them all. Figures are reported, never asserted (see bench/common.py)."""
