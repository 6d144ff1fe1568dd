"""Benchmarks: `make bench`. Each prints figures beside a peer or a limit measured in the same run."""
