"""Gradescope: setup.sh, run_autograder, and `python3 -m harness gradescope OUT.zip` to pack them."""
