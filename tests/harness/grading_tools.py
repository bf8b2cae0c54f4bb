"""Helpers of the grader's self-tests: copy the reference tree, apply a variant, run the grader."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

from harness.grading.handout import tree_files
from harness.programs import REPO, bin_dir

PYTHON = "/usr/bin/python3"
VARIANTS = Path(__file__).resolve().parent / "variants"


def copy_tree(dst: Path, labs: list[str] | None = None) -> Path:
    """The reference source tree (tracked files, as in the working tree); only `labs` if given."""
    for rel in tree_files(REPO):
        parts = rel.parts
        if labs is not None and parts[0] == "labs" and len(parts) > 2 and parts[1][:2] not in labs:
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((REPO / rel).read_bytes())
        out.chmod((REPO / rel).stat().st_mode)
    return dst


def load_variant(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def apply_variant(tree: Path, variant: dict) -> None:
    for r in variant["replace"]:
        f = tree / r["file"]
        text = f.read_text()
        times = text.count(r["old"])
        assert times == 1, f"{r['file']}: the text to replace occurs {times} times: {r['old']!r}"
        f.write_text(text.replace(r["old"], r["new"]))


def build_variant(variant: dict, dst: Path) -> Path:
    """A bin folder for a variant without building a tree: the reference build's programs, and
    each program whose source the variant changes compiled again from the changed source with the
    reference build's own compile command (compile_commands.json, without -Werror, as the grader
    builds), linked in the same call. Without -g and at -Og rather than -O2: a variant's bug is in
    its source, and -Og compiles in about half the time while keeping _FORTIFY_SOURCE's checks
    (an FD_SET past FD_SETSIZE still aborts).

    Every lab program is one .cpp file, so this is the build a source-tree grading would do, minus
    configuring CMake and compiling the unchanged programs (grading a source tree is tested by
    test_handout.py's batch)."""
    ref = bin_dir()
    compile_commands = json.loads((ref.parent / "compile_commands.json").read_text())
    commands = {Path(e["file"]).resolve(): e for e in compile_commands}
    out = dst / "bin"
    out.mkdir(parents=True)
    for program in ref.iterdir():
        shutil.copy2(program, out / program.name)   # a copy: the grader may run it as another uid
    tree = dst / "src"
    for r in variant["replace"]:
        source = tree / r["file"]
        if not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / r["file"], source)
    apply_variant(tree, variant)
    for rel in sorted({r["file"] for r in variant["replace"]}):
        entry = commands[(REPO / rel).resolve()]
        argv = shlex.split(entry["command"])
        obj = argv[argv.index("-o") + 1]
        name = Path(obj).name.removesuffix(".cpp.o")
        argv[argv.index("-o") + 1] = str(out / name)
        argv.remove("-c")
        argv = [a for a in argv if a not in ("-Werror", "-g")]   # as the grader builds; no debug info
        argv = ["-Og" if a == "-O2" else a for a in argv]
        argv[argv.index(entry["file"])] = str(tree / rel)
        argv.insert(1, f"-iquote{(REPO / rel).parent}")   # the lab's own headers, beside the reference
        (out / name).unlink()
        proc = subprocess.run(argv, cwd=entry["directory"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"the variant of {rel} did not compile:\n{proc.stdout[-3000:]}"
        assert os.access(out / name, os.X_OK), f"no program {name} after compiling {rel}"
    return out


def grade(submission: Path, out: Path, *args: str,
          timeout: float = 600) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `python3 -m harness grade` on a submission; its JSON result model and the process."""
    cmd = [PYTHON, "-m", "harness", "grade", str(submission), "--json", str(out), "--color", "never", *args]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert out.exists(), f"no JSON report was written\n{proc.stdout[-3000:]}"
    return json.loads(out.read_text()), proc


def every_test(result: dict) -> list[dict]:
    return [t for lab in result["labs"] for t in lab["tests"]]


def skipped_for_root(test: dict) -> bool:
    """A test that, run by an ordinary user, skipped because it needs root and said how to run it
    (e.g. "needs root: it builds a LAN ...; run it as root: sudo ctest --preset dev -L lab06").
    As root nothing may skip."""
    return os.geteuid() != 0 and test["status"] == "skipped" and "run it as root" in test["message"]
