"""socklab harness: start lab programs, drive them as real clients, probe /proc, grade.

Each module is small; stdlib only (pytest only where a module is a pytest plugin or spec).

The core (what every lab spec uses):
  ready          the ready-line format every server prints
  programs       where lab binaries are found
  process        LabProcess: start in its own session, read lines, always stop everything
  clients        TCP and UDP clients with timeouts
  probes         /proc probes: fds, threads, children, zombies, CPU, RSS, TCP states
  steps          named test steps and the per-test wall-clock limit
  contract       checks of the CLI contract (--help, bad options, a port in use)
  netns          a small LAN of network namespaces for multi-host tests
  pytest_plugin  the fixtures `lab` and `steps`, markers, failure reports
  manifest       labs/manifest.toml: the labs, their programs and status
  check          the per-lab pass/fail table (the README's first command ends with it)
  readme_table   README.md's reading-order table, made from the manifest

Grading (python3 -m harness ...; see harness/README.md):
  grade          grade one submission: run the specs and hidden tests against its programs
  batch          grade a folder of submissions in parallel: CSV and JSON per submission
  submission     what a submission is, and building it
  limits         rlimits for every program, and a cgroup per submission
  grade_plugin   the grader's pytest plugin: one JSON line per test
  results        the one result model; reports writes every report from it
  hints          from a failed test to expected, actual, evidence and one hint line
  points         labs/points.toml: points, tags, visibility, behaviour probes
  pointscheck    `harness points [--check]`: every test has points
  handout        student handouts from the solution regions of the reference sources
  specs/         the scored behaviour probes; gradescope/, classroom/: ready-made integrations
"""
