"""python3 -m bench ... (from labs/19-server-benchmark): the same as python3 -m harness bench."""
import sys

from .driver import main

sys.exit(main(sys.argv[1:]))
