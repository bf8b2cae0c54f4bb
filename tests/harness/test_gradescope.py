"""The Gradescope pair: the packed autograder zip, run_autograder on an uploaded lab file, and
a results.json even when the upload is garbage."""
from __future__ import annotations

import json
import os
import subprocess
import zipfile

import pytest

from grading_tools import PYTHON
from harness.programs import REPO
from harness.reports import validate_gradescope


def autograder(tmp_path, files: dict[str, bytes], labs: str = "01") -> dict:
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    zpath = tmp_path / "ag.zip"
    subprocess.run([PYTHON, "-m", "harness.gradescope", str(zpath), "--labs", labs], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(root / "source")
        for info in z.infolist():
            mode = info.external_attr >> 16
            if mode:
                os.chmod(root / "source" / info.filename, mode)
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"name": "Ada Student"}]}))
    env = dict(os.environ, AUTOGRADER_ROOT=str(root))
    subprocess.run([str(root / "source" / "run_autograder")], env=env, timeout=900, check=True)
    return json.loads((root / "results" / "results.json").read_text())


@pytest.mark.limit(900)
def test_uploaded_lab_file_is_graded_over_the_handout(tmp_path):
    src = (REPO / "labs" / "01-socket-basics" / "socket_info.cpp").read_bytes()
    res = autograder(tmp_path, {"socket_info.cpp": src})
    assert validate_gradescope(res) == []
    assert res["tests"] and all(t["status"] == "passed" for t in res["tests"]), res["output"]
    assert res["extra_data"]["student"] == "Ada Student"


@pytest.mark.limit(900)
def test_garbage_upload_still_gets_results_with_the_compiler_message(tmp_path):
    res = autograder(tmp_path, {"socket_info.cpp": b"this is not C++\n"})
    assert validate_gradescope(res) == []
    # (a spec test that checks only the notes, not the program, may still pass)
    assert sum(t["score"] for t in res["tests"]) < sum(t["max_score"] for t in res["tests"]) / 2
    failed = [t for t in res["tests"] if t["status"] == "failed"]
    assert failed and all("did not build" in t["output"] for t in failed)
    assert "build: FAILED" in res["output"] and "error" in res["output"]
