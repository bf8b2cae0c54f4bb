"""Lab 19's benchmark driver: `python3 -m harness bench --help` (or `python3 -m bench` here)."""
