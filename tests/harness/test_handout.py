"""Handouts: markers balance, stubs replace the solution regions, the handout builds with
-Werror, and graded it scores below full on every lab that has solution regions (proof that the
tests test something). Also: a batch of reference, handout and a broken variant, in parallel."""
from __future__ import annotations

import csv
import datetime as dt
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from grading_tools import PYTHON, VARIANTS, apply_variant, copy_tree, every_test, load_variant
from harness import manifest
from harness.grading import handout
from harness.programs import REPO, bin_dir

AVAILABLE = [l.id for l in manifest.load() if l.available]


def test_markers_balance_in_the_tree():
    errors, counts = handout.check(REPO)
    assert errors == []
    assert {"01", "02"} <= set(counts)


@pytest.mark.parametrize("text, problem", [
    ("// BEGIN SOLUTION\n// BEGIN SOLUTION\n// END SOLUTION\n// END SOLUTION\n", "inside"),
    ("int x;\n// END SOLUTION\n", "without a BEGIN"),
    ("// BEGIN SOLUTION\nint x;\n", "never closed"),
    ("// STUB return 0;\n", "STUB outside"),
    ("# BEGIN HIDDEN TESTS\n// END SOLUTION\n", "closes the HIDDEN TESTS region"),
    ("// SOLUTION: a\n// SOLUTION: b\n// END\n// END\n", "inside"),
    ("int x;\n// END\n", "without a BEGIN"),
    ("// SOLUTION: a\nint x;\n", "never closed"),
])
def test_unbalanced_markers_are_errors_with_the_line(text, problem):
    with pytest.raises(handout.MarkerError, match=problem):
        handout.regions(text, "f.cpp")


def test_region_becomes_todo_and_stub_at_its_indentation():
    src = ("int f(int a) {\n"
           "    // SOLUTION: return twice a\n"
           "    if (a > 0) {\n"
           "        return 2 * a;\n"
           "            // STUB return 0;\n"
           "    }\n"
           "    // END\n"
           "}\n"
           "# BEGIN HIDDEN TESTS\n"
           "def test_secret(): pass\n"
           "# END HIDDEN TESTS\n")
    assert handout.strip(src) == ("int f(int a) {\n"
                                  "    // TODO: return twice a\n"
                                  "    return 0;\n"
                                  "}\n")


def test_a_region_without_stub_gets_a_throw_naming_its_function():
    src = ("std::string round_trip(const lab::Fd& s, const lab::Address& server,\n"
           "                       int timeout_ms) {\n"
           "    for (int i = 0; i < 3; ++i) {\n"
           "        // SOLUTION: send and receive\n"
           "        send(s, server);\n"
           "        // END\n"
           "    }\n"
           "}\n")
    assert handout.strip(src).splitlines()[3:5] == [
        "        // TODO: send and receive",
        '        throw std::runtime_error("round_trip is not written yet");']
    assert handout.strip("void f() {\n    // SOLUTION: x\n    g();\n    // STUB\n    // END\n}\n") == (
        "void f() {\n    // TODO: x\n}\n")   # a bare STUB: no stub at all


def test_every_stub_of_the_tree_sits_at_its_regions_indentation_and_names_its_function():
    """Every SOLUTION region of the labs: the TODO line and each stub line start at the marker's
    indentation, a region without STUB lines throws naming its function, no (void) lines remain."""
    checked = 0
    for rel in handout.tree_files(REPO):
        if rel.parts[0] != "labs" or rel.suffix not in (".cpp", ".hpp"):
            continue
        src = (REPO / rel).read_text()
        out = handout.strip(src, str(rel)).splitlines()
        lines = src.splitlines()
        for region in handout.regions(src, str(rel)):
            if region.kind != "SOLUTION":
                continue
            marker = lines[region.start - 1]
            indent = marker[:len(marker) - len(marker.lstrip())]
            todo = indent + "// TODO: " + marker.split(":", 1)[1].strip()
            assert todo in out, f"{rel}:{region.start}: no TODO line at the region's indentation"
            stub = out[out.index(todo) + 1]
            assert stub.startswith(indent) and not stub[len(indent)].isspace(), (
                f"{rel}:{region.start}: the stub {stub!r} is not at the region's indentation")
            name = handout.enclosing_function(lines, region.start - 1)
            assert name != "this part", f"{rel}:{region.start}: no enclosing function found"
            checked += 1
        assert "(void)" not in "\n".join(out), f"{rel}: a (void) stub line is left in the handout"
    assert checked >= 20, checked


@pytest.fixture(scope="module")
def built_handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout")
    tree = out / "tree"
    proc = subprocess.run([PYTHON, "-m", "harness", "handout", str(tree)], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout
    build = out / "build"
    # The dev preset's flags (-Werror, -O2: the warnings that need optimisation), without debug info:
    # nobody debugs the handout build, and -g is a good part of the compile time.
    no_debug_info = "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG"
    cfg = subprocess.run(["cmake", "--preset", "dev", "-B", str(build), no_debug_info], cwd=tree, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert cfg.returncode == 0, cfg.stdout[-3000:]
    programs = [p for l in manifest.load() if l.available for p in l.programs]
    b = subprocess.run(["cmake", "--build", str(build), "-j", "2", "--target", *programs], text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1200)
    return tree, build, b


@pytest.mark.limit(1500)
def test_handout_has_todos_and_no_solution_markers(built_handout):
    tree = built_handout[0]
    assert not (tree / "tests" / "harness").exists()
    text = (tree / "labs" / "02-udp-send-recv" / "udp_recv.cpp").read_text()
    assert "// TODO: receive one datagram" in text and "// SOLUTION" not in text
    assert "recvmsg(s.get()" not in text and "receive_datagrams is not written yet" in text
    assert (tree / ".handout").exists(), "CMakeLists.txt needs .handout to relax the unused warnings"
    assert handout.check(tree)[1] == {}


@pytest.mark.limit(1500)
def test_handout_builds_with_werror(built_handout):
    _, _, b = built_handout
    assert b.returncode == 0, b.stdout[-4000:]


@pytest.mark.limit(1500)
def test_handout_scores_below_full_on_every_lab_with_solution_regions(built_handout, tmp_path):
    tree, build, b = built_handout
    assert b.returncode == 0, b.stdout[-4000:]
    with_regions = sorted(set(handout.check(REPO)[1]) & set(AVAILABLE))
    assert {"01", "02"} <= set(with_regions)
    # Three gradings side by side, each lab stopping at its first failing test (CI time).
    groups = [with_regions[i::3] for i in range(3) if with_regions[i::3]]

    def one(i_labs):
        i, labs = i_labs
        out = tmp_path / f"h{i}.json"
        proc = subprocess.run([PYTHON, "-m", "harness", "grade", str(build / "bin"), "--json", str(out),
                               "--labs", ",".join(labs), "--skip-slow", "--first-failure", "--quiet"],
                              cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=1500)
        return json.loads(out.read_text()), proc.stdout

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, enumerate(groups)))
    graded = []
    for result, console in results:
        for lab in result["labs"]:
            graded.append(lab["id"])
            assert lab["score"] < lab["max_score"], (
                f"lab {lab['id']}: the handout scored full points\n{console}")
            ran_and_failed = [t for t in lab["tests"] if t["status"] == "failed" and t["runs"] and
                              "did not run" not in t["message"]]
            assert ran_and_failed, f"lab {lab['id']}: no test of the handout failed for real\n{console}"
            said = [" ".join(str(t.get(k) or "") for k in ("message", "evidence", "actual"))
                    for t in ran_and_failed]
            named = [s for s in said if re.search(r"\w+ is not written yet", s)]
            assert named, f"lab {lab['id']}: no failure names the unwritten function\n{console}"
    assert sorted(graded) == with_regions


@pytest.mark.limit(900)
def test_batch_of_reference_handout_and_broken_gives_three_rows_in_parallel(built_handout, tmp_path):
    build = built_handout[1]
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "reference").symlink_to(bin_dir())     # a bin folder
    (subs / "handout").symlink_to(build)           # a build folder (built once, by the fixture)
    broken = copy_tree(subs / "broken", labs=["01", "02"])   # a source tree: the grader builds it
    apply_variant(broken, load_variant(VARIANTS / "02_truncation_silent.toml"))
    out = tmp_path / "out"
    proc = subprocess.run([PYTHON, "-m", "harness", "batch", str(subs), "-j", "3", "--out", str(out),
                           "--labs", "01,02"], cwd=REPO, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, proc.stdout
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert set(rows) == {"reference", "handout", "broken"}, proc.stdout
    assert list(next(iter(rows.values())).keys())[:4] == ["student", "lab01", "lab02", "total"]
    ref, ho, br = rows["reference"], rows["handout"], rows["broken"]
    assert ref["total"] == ref["max"] and float(ref["max"]) > 0
    assert float(ho["lab01"]) < float(ref["lab01"]) and float(ho["lab02"]) < float(ref["lab02"])
    assert br["lab01"] == ref["lab01"] and float(br["lab02"]) < float(ref["lab02"])
    for name, row in rows.items():
        result = json.loads((out / f"{name}.json").read_text())
        assert f"{result['score']:g}" == row["total"]
        skipped = sum(t["status"] == "skipped" for t in every_test(result))   # as an ordinary user
        counted = int(row["passed"]) + int(row["failed"]) + int(row["flaky"])
        assert len(every_test(result)) == counted + skipped
    # in parallel: the three gradings overlapped in time
    spans = []
    for name in rows:
        r = json.loads((out / f"{name}.json").read_text())
        start = dt.datetime.fromisoformat(r["started"]).timestamp()
        spans.append((start, start + r["execution_time"]))
    assert max(s for s, _ in spans) < min(e for _, e in spans) + 1, spans
