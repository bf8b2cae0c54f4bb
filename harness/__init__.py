"""socklab harness: start lab programs, drive them as real clients, probe /proc, grade.

Two packages; dependencies run one way: harness.grading imports the core, never the reverse
(tests/harness/test_layout.py checks it). Each module is small; stdlib only (pytest only where a
module is a pytest plugin or spec). Every tool is a verb of `python3 -m harness` (__main__.py).

The core, harness/ (what every lab spec imports):
  ready          the ready-line format every server prints
  programs       where lab binaries are found
  manifest       labs/manifest.toml: the labs, their programs and status
  output         labs/NN-topic/output.toml: each lab's output contract (lines, patterns, examples)
  process        LabProcess: start in its own session, read lines, always stop everything
  rlimits        the resource limits every started program gets (set by the grader)
  clients        TCP and UDP clients with timeouts
  probes         /proc probes: fds, threads, children, zombies, CPU, RSS, TCP states; snapshots
  steps          named test steps, the per-test wall-clock limit, wait_for
  contract       checks of the CLI contract (--help, bad options, a port in use)
  netns/         network namespaces: a small LAN (lan), one private namespace (private)
  pytest_plugin  the fixtures `lab` and `steps`, markers, failure reports
  readme_table   README.md's reading-order table, made from the manifest (`harness readme`)

The grader, harness/grading/ (python3 -m harness check|grade|batch|handout|points|gradescope):
  grading/__init__.py lists its modules.
"""
