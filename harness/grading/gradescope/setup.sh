#!/usr/bin/env bash
# Gradescope image setup (runs once, as root, when the autograder image is built).
# Debian/Ubuntu packages only: the compiler, CMake + Ninja, doctest, Python 3 with pytest,
# iproute2 (network namespaces for the multi-host labs) and iconv data (glibc, built in).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends g++ cmake ninja-build doctest-dev python3 python3-pytest \
    iproute2 procps git ca-certificates
# The grader runs Debian's /usr/bin/python3; check that it can import pytest and tomllib (3.11+).
/usr/bin/python3 -c "import pytest, tomllib"
