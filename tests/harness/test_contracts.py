"""Every lab's output contract (labs/NN-topic/output.toml) is sound, is the only source of the
patterns its spec matches, and is what the lab README's Output section shows."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from harness import manifest, readme_table
from harness.output import ERROR, HINT, READY, contract
from harness.programs import REPO

LABS = [lab for lab in manifest.load()
        if lab.available and (REPO / "labs" / lab.dir / "output.toml").is_file()]
RE_CALLS = {"compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"}
OUTPUT_NAMES = ("stdout", "stderr")


def test_every_available_lab_has_an_output_contract():
    missing = [lab.dir for lab in manifest.load() if lab.available and lab not in LABS]
    assert not missing, f"labs without labs/NN-topic/output.toml: {missing}"


@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_contract_examples_match_their_own_patterns(lab):
    c = contract(lab.id)
    bad = [f"{line.name}: example {line.example!r} does not match /{line.pattern.pattern}/"
           for line in c.lines.values() if not line.match(line.example)]
    assert not bad, f"{c.path}:\n" + "\n".join(bad)


@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_contract_names_real_programs_streams_and_lines(lab):
    c = contract(lab.id)
    problems = [f"line {line.name}: {line.program} is not a program of lab {lab.id}"
                for line in c.lines.values() if line.program not in lab.programs]
    problems += [f"line {line.name}: stream {line.stream!r}" for line in c.lines.values()
                 if line.stream not in OUTPUT_NAMES]
    names = [e.name for e in c.exits if e.name]
    problems += [f"two exits are named {n!r}" for n in set(names) if names.count(n) > 1]
    for e in c.exits:
        if e.program not in lab.programs:
            problems.append(f"exit {e.name or e.status}: {e.program} is not a program of lab {lab.id}")
        if e.stderr and (e.stderr not in c.lines or c.lines[e.stderr].stream != "stderr"
                         or c.lines[e.stderr].program != e.program):
            problems.append(f"exit {e.name or e.status}: stderr names {e.stderr!r}, "
                            f"no stderr line of {e.program}")
    assert not problems, f"{c.path}:\n" + "\n".join(problems)


def test_suite_wide_lines_match_their_examples():
    for line in (READY, ERROR, HINT):
        assert line.match(line.example), f"{line.name}: {line.example!r} !~ /{line.pattern.pattern}/"


# ---- the specs take their patterns from the contract ----------------------------------------

def _is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, or a list/tuple of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return bool(node.elts) and all(_is_text(e) for e in node.elts)
    if isinstance(node, ast.ListComp):
        return _is_text(node.elt)
    return False


CONTRACT_READS = {"find", "findall", "only", "match", "report"}


def _reads_output(node: ast.AST) -> bool:
    """Does this expression read a program's printed output (.stdout / .stderr) other than
    through a contract Line (line.find(proc.stdout) ...) or a report?"""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in CONTRACT_READS):
        return False
    if isinstance(node, ast.Attribute) and node.attr in OUTPUT_NAMES:
        return True
    return any(_reads_output(child) for child in ast.iter_child_nodes(node))


def _option_name(node: ast.AST) -> bool:
    """"--backlog" in bad.stderr: the suite-wide contract (a usage error names the option)."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"--[\w-]+", node.value) is not None)


def pattern_literals(source: str) -> list[tuple[int, str]]:
    """(line, why) for each place a spec matches printed output against a literal of its own."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f, args = node.func, node.args
            literal_first = bool(args) and _is_text(args[0])
            if isinstance(f.value, ast.Name) and f.value.id == "re" and f.attr in RE_CALLS and literal_first:
                found.append((node.lineno, f"re.{f.attr}() with a pattern literal"))
            elif f.attr == "expect" and literal_first:
                found.append((node.lineno, "expect() with a pattern literal"))
            elif f.attr in ("startswith", "endswith") and _reads_output(f.value) and literal_first:
                found.append((node.lineno, f"printed output .{f.attr}() a literal"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, sides, sides[1:]):
                if isinstance(op, (ast.In, ast.NotIn)) and _is_text(left) and _reads_output(right) \
                        and not _option_name(left):
                    found.append((node.lineno, "a literal looked for `in` printed output"))
                elif isinstance(op, (ast.Eq, ast.NotEq)) and (
                        (_is_text(left) and _reads_output(right))
                        or (_is_text(right) and _reads_output(left))):
                    found.append((node.lineno, "printed output compared with a literal"))
    return found


@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_spec_matches_no_pattern_of_its_own(lab):
    spec: Path = lab.spec
    found = pattern_literals(spec.read_text())
    assert not found, (f"{spec.relative_to(REPO)} matches printed output against literals that are not from "
                       f"labs/{lab.dir}/output.toml (declare the line there and use contract({lab.id!r})):\n"
                       + "\n".join(f"  line {n}: {why}" for n, why in found))


def exit_literals(source: str) -> list[int]:
    """Lines where a spec compares an exit status with a literal other than 0 (SIGTERM's exit 0 is the
    suite's contract): a lab's statuses 1 and 2 come from its contract, C.status("name")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Compare) and len(node.ops) == 1
                and isinstance(node.ops[0], (ast.Eq, ast.NotEq))):
            sides = [node.left, node.comparators[0]]
            status = any("returncode" in ast.unparse(x) or "wait_exit" in ast.unparse(x) for x in sides)
            literal = any(isinstance(x, ast.Constant) and isinstance(x.value, int) and x.value != 0
                          for x in sides)
            if status and literal:
                found.append(node.lineno)
    return found


@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_spec_takes_its_exit_statuses_from_the_contract(lab):
    found = exit_literals(lab.spec.read_text())
    assert not found, (f"{lab.spec.name} compares exit statuses with literals on lines {found}: "
                       f"declare them as [[exit]] in labs/{lab.dir}/output.toml and use C.status(name)")
    assert exit_literals("assert proc.popen.returncode == 2") == [1]


def test_the_literal_finder_finds_what_it_must():
    """The check above can fail: each way of bypassing the contract is caught."""
    bypasses = ['re.compile(r"^callback (\\d+)")',
                'proc.expect("holding off")',
                'assert "sent" in proc.stdout',
                'assert proc.stderr.startswith(f"x {port}")',
                'assert proc.stdout.splitlines() == ["echo \\"a\\""]',
                're.search(rf"^x {n}$", proc.stdout, re.M)']
    for code in bypasses:
        assert pattern_literals(code), f"not caught: {code}"
    for code in ['proc.expect(C["callback"])',
                 'assert C["sent"].find(proc.stdout)',
                 'assert "--hex" in bad.stderr',
                 'assert [m[1] for m in ECHO.findall(proc.stdout)] == ["a"]']:
        assert not pattern_literals(code), f"wrongly caught: {code}"


def test_every_pattern_used_in_a_spec_is_a_contract_line_name():
    """contract(NN)["name"] in a spec names a line the contract declares (a typo fails at import
    time too, but only when that test runs)."""
    problems = []
    for lab in LABS:
        c = contract(lab.id)
        text = lab.spec.read_text()
        for name in re.findall(r'\bC\["(\w+)"\]', text) + re.findall(r'\bC\.line\("(\w+)"\)', text):
            if name not in c.lines:
                problems.append(f"{lab.spec.name}: C[{name!r}] is not a line of {c.path.name}")
        for name in re.findall(r'\bC\.(?:status|exit)\("(\w+)"\)', text):
            if name not in {e.name for e in c.exits}:
                problems.append(f"{lab.spec.name}: exit {name!r} is not declared in {c.path.name}")
    assert not problems, "\n".join(problems)


# ---- the README shows the contract ----------------------------------------------------------

@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_readme_output_section_is_made_from_the_contract(lab):
    path = REPO / "labs" / lab.dir / "README.md"
    text = path.read_text()
    assert "\n## Output\n" in text, f"{path.relative_to(REPO)} has no '## Output' section"
    assert readme_table.rewrite_lab(text, lab.id) == text, \
        (f"{path.relative_to(REPO)}: the Output section is stale: "
         "run /usr/bin/python3 -m harness readme --write")
    for line in contract(lab.id).lines.values():
        assert line.template in text and line.pattern.pattern in text, f"{line.name} is not shown"
