"""The grader: what only instructors' grading (and the per-lab check table) uses. It imports the
core (harness/) freely; the core never imports it. See harness/README.md.

  check          `harness check`: the per-lab pass/fail table, a view over the runner's results
  grade          `harness grade`: grade one submission (orchestration, options, reports)
  batch          `harness batch`: a folder of submissions in parallel: CSV and JSON per submission
  selection      which labs, spec files and hidden tests a run covers
  runner         the one pytest runner: one lab's run in its own process, JSON line per test
  grade_plugin   the runner's pytest plugin: streams the JSON lines
  scoring        from the runs to scored tests: points, pass/fail/flaky, partial credit, hints
  points         labs/points.toml, and `harness points [--check]`: every test has points
  hints          from a failed test to expected, actual, evidence and one hint line
  results        the one result model; reports writes every report from it
  sandbox        a cgroup per submission (pids, memory), or the documented fallback
  submission     what a submission is (bin folder, build folder, source tree), and building it
  handout        `harness handout`: student handouts from the solution regions
  specs/         the scored behaviour probes (test_behaviour.py)
  gradescope/    `harness gradescope`: the autograder zip (setup.sh, run_autograder)
  classroom/     an example GitHub Classroom workflow
"""
