"""The proxy benchmark: `make bench` (proxy_bench.py), its stand-in, load generator and /proc readers."""
