"""What a submission is, and building it.

A submission is one of:
  - a folder of programs (a build's bin/ folder, or scripts in any language): named as in
    labs/manifest.toml, executable, following the CLI contract;
  - a build folder (it has bin/): its bin/ is used;
  - a source tree laid out like socklab (CMakeLists.txt at the top, labs/NN-topic/...): it is
    configured and built with cmake into a temporary build folder first. A failed build is
    reported (the compiler's message, score 0 for what did not build), never fatal.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Prepared:
    kind: str            # bin | source
    bin_dir: Path
    build_ok: bool = True
    build_log: str = ""
    temp: Path | None = None   # remove when done

    def cleanup(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


def _tail(text: str, lines: int = 60) -> str:
    rows = text.rstrip().splitlines()
    return "\n".join(rows[-lines:])


def _errors_first(log: str, lines: int = 40) -> str:
    """The compiler's error lines first (what a student must fix), then the end of the log."""
    errs = [l for l in log.splitlines() if re.search(r"\berror\b|Error|undefined reference|CMake Error", l)]
    head = "\n".join(errs[:lines])
    return (head + "\n--- end of the build log ---\n" if head else "") + _tail(log, 30)


def prepare(path: Path, programs: list[str], *, werror: bool = False, timeout: float = 900,
            work: Path | None = None) -> Prepared:
    """A bin folder with the submission's programs (building a source tree first)."""
    path = path.resolve()
    if (path / "CMakeLists.txt").is_file():
        return build(path, programs, werror=werror, timeout=timeout, work=work)
    if (path / "bin").is_dir() and not any((path / p).is_file() for p in programs):
        return Prepared("bin", path / "bin")
    return Prepared("bin", path)


def build(src: Path, programs: list[str], *, werror: bool = False, timeout: float = 900,
          work: Path | None = None) -> Prepared:
    temp = Path(tempfile.mkdtemp(prefix="socklab-build-", dir=work))
    out = Prepared("source", temp / "bin", temp=temp)
    log = []

    def run(cmd: list[str]) -> int:
        log.append("$ " + " ".join(cmd))
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired as e:
            log.append(str(e.output or "") + f"\n(build step stopped after {timeout:g} s)")
            return 124
        except OSError as e:
            log.append(f"cannot run {cmd[0]}: {e}")
            return 127
        log.append(p.stdout)
        return p.returncode

    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    rc = run(["cmake", "-S", str(src), "-B", str(temp), *gen, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
              f"-DSOCKLAB_WERROR={'ON' if werror else 'OFF'}"])
    if rc != 0:
        out.build_ok, out.build_log = False, _errors_first("\n".join(log))
        return out
    targets = _known_targets(temp)
    wanted = [p for p in programs if p in targets] if targets is not None else programs
    missing = [p for p in programs if targets is not None and p not in targets]
    jobs = str(max(1, min(os.cpu_count() or 1, 4)))
    if wanted:
        keep_going = ["--", "-k", "0"] if gen else ["--", "-k"]
        rc = run(["cmake", "--build", str(temp), "-j", jobs, "--target", *wanted, *keep_going])
    if missing:
        log.append("no build target for: " + ", ".join(missing) + " (their tests fail: program not found)")
    if rc != 0 or missing:
        out.build_ok = rc == 0 and not missing
        out.build_log = _errors_first("\n".join(log))
    else:
        out.build_log = _tail("\n".join(log), 5)
    return out


def _known_targets(build_dir: Path) -> set[str] | None:
    if not (build_dir / "build.ninja").exists():
        return None
    p = subprocess.run(["ninja", "-C", str(build_dir), "-t", "targets", "all"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return {line.split(":")[0] for line in p.stdout.splitlines() if ":" in line}
