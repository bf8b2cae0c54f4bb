"""socklab harness: start lab programs, drive them as real clients, probe /proc, grade.

Modules (each small, stdlib only; pytest only in pytest_plugin):
  ready      the ready-line format every server prints
  programs   where lab binaries are found
  process    LabProcess: start in its own process group, read lines, always stop everything
  clients    TCP and UDP clients with timeouts
  probes     /proc probes: fds, threads, children, zombies, CPU, RSS, TCP states
  steps      named test steps and the per-test wall-clock limit
  manifest   labs/manifest.toml: which lab has which programs
  check      the per-lab pass/fail table (the first command of the README)
"""
