"""The READMEs keep their promises about themselves (issue 23.6).

- Every link inside README.md and plugins/README.md lands on a heading (GitHub's anchors), and
  every link to another file of the repository names one that exists.
- No two snippets write the same file: run in order in one folder, a command's output (`-o`,
  `--report`, `--save-outputs`, `--html`) never exists already unless the command says `--force`.
- The quick start's and the user guide's snippets run as written, in order, in one folder: a
  ```python block whose first line is `# NAME.py` is written as NAME.py, every `$ ...` line (and
  every line of a ```sh block) is run by bash there, with the repository and that folder on
  PYTHONPATH (the guide's models live in tests/), and exits as its shown output says (0; 1 for a
  shown parity failure; 2 for any other shown `error:`); each shown line of its output that is
  not elided (`...`) or a table row is in what it printed (decimal numbers, errors and timings
  that move between runs, compared as wildcards). What is not run is said, by rule
  (`NOT_RUN_HERE`), in the skip summary of test_what_is_not_run_here_is_said.
- The example JSON report has the keys, types and failing row of the report its command writes.

The helpers take Markdown text, so each rule is also run on a small synthetic file that breaks it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "plugins" / "README.md"]

# The part of README.md whose snippets are run: from this heading (the quick start) through the
# level-1 "User guide", up to the next level-1 heading (the reference and the design notes after
# it show commands for a GPU, a TensorRT install, CMake, or the measurements' own scripts).
GUIDE_FIRST_HEADING = "Quick start: check your own model"

# Commands that are not run here, with why: (what in the command, the reason).
NOT_RUN_HERE = [
    (re.compile(r"\bpip install\b|\bpython3? -m venv\b"),
     "installs packages: the test runs in the environment already installed"),
    (re.compile(r"(^|\s)(\S*/)?deploykit build\b|\btrtexec\b|--engine\b|--cuda-graph\b"),
     "needs TensorRT and a GPU"),
    (re.compile(r"--backends[ =]\S*\b(trt|ort-trt|ort-cuda|torch-cuda)\b"),
     "asks for a GPU backend"),
    (re.compile(r"(^|\s)cmake\b|\bctest\b"), "builds the native code: tests/plugins builds it"),
]

OUTPUT_OPTIONS = ("-o", "--output", "--report", "--save-outputs", "--html")
TABLE_CHARS = set("│┃┏┡└┗┳╇━─┓┩┘┛")
SEPARATORS = {"&&", "||", ";", "|"}


# ------------------------------------------------------------------------------------- Markdown


@dataclass
class Block:
    lang: str
    lines: list[str]
    line_no: int                     # of the opening fence, 1-based
    headings: tuple[str, ...]        # the headings above it, outermost first


@dataclass
class Heading:
    level: int
    title: str
    line_no: int


def parse(text: str) -> list[Heading | Block]:
    """Headings and fenced blocks in document order (a `#` line inside a fence is code)."""
    items: list[Heading | Block] = []
    path: list[tuple[int, str]] = []
    fence = None
    for no, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip(" ")
        if fence is not None:
            if stripped.startswith(fence.marker) and not stripped.strip("`~ "):
                items.append(fence.block)
                fence = None
            else:
                fence.block.lines.append(line)
            continue
        match = re.match(r"(```+|~~~+)\s*([\w+-]*)", stripped)
        if match and len(line) - len(stripped) <= 3:
            block = Block(match.group(2).lower(), [], no, tuple(title for _, title in path))
            fence = _Fence(match.group(1), block)
            continue
        match = re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            level, title = len(match.group(1)), match.group(2)
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
            items.append(Heading(level, title, no))
    if fence is not None:
        raise AssertionError(f"the fence opened at line {fence.block.line_no} is never closed")
    return items


@dataclass
class _Fence:
    marker: str
    block: Block


def slug(title: str) -> str:
    """GitHub's anchor of a heading: its text as rendered (no code marks, emphasis or link
    targets), lower-cased, punctuation dropped but for `-` and `_`, spaces made `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for item in parse(text):
        if isinstance(item, Heading):
            base = slug(item.title)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside fenced blocks and code spans."""
    fenced = set()
    for item in parse(text):
        if isinstance(item, Block):
            fenced.update(range(item.line_no, item.line_no + len(item.lines) + 2))
    found = []
    for no, line in enumerate(text.split("\n"), 1):
        if no in fenced:
            continue
        line = re.sub(r"`[^`]*`", "code", line)
        found += [(no, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return found


def broken_links(path: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links of the Markdown file at path (or of text, as if it were there)."""
    text = path.read_text() if text is None else text
    problems = []
    for no, target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        target_file = (path.parent / file_part).resolve() if file_part else path
        if file_part and not target_file.exists():
            problems.append(f"{path.name}:{no}: {target}: {file_part} does not exist")
            continue
        if anchor:
            target_text = text if target_file == path else target_file.read_text()
            if anchor not in anchors(target_text):
                problems.append(f"{path.name}:{no}: {target}: no heading has the anchor #{anchor}")
    return problems


# ------------------------------------------------------------------------------------- snippets


@dataclass
class Command:
    text: str
    line_no: int
    shown: list[str] = field(default_factory=list)  # the output the README shows under it

    @property
    def expected_exit(self) -> int:
        if any(line.startswith("parity FAILED") for line in self.shown):
            return 1
        errors = [line for line in self.shown if line.startswith("error:")]
        if errors:
            return 1 if "does not compute what PyTorch computes" in errors[0] else 2
        return 0

    @property
    def writes(self) -> bool:
        """A run that ends in `error:` writes nothing (exit 1 of export, every exit 2)."""
        return not any(line.startswith("error:") for line in self.shown)


@dataclass
class PythonFile:
    name: str
    text: str
    line_no: int


def snippets(block: Block) -> list[Command | PythonFile]:
    """A block's commands (`$ ` lines with the output shown under them, or every line of a
    sh/bash block), or the file a ```python block whose first line is `# NAME.py` defines."""
    if block.lang == "python":
        match = re.fullmatch(r"#\s*([\w.-]+\.py)\s*", block.lines[0]) if block.lines else None
        return [PythonFile(match.group(1), "\n".join(block.lines) + "\n", block.line_no)] if match else []
    if block.lang in ("sh", "bash", "shell"):
        return [Command(line.strip(), block.line_no + i + 1) for i, line in enumerate(block.lines)
                if line.strip() and not line.lstrip().startswith("#")]
    if block.lang in ("", "console", "text"):
        found: list[Command] = []
        for i, line in enumerate(block.lines):
            if line.startswith("$ "):
                found.append(Command(line[2:].strip(), block.line_no + i + 1))
            elif found:
                found[-1].shown.append(line)
        return found
    return []


def guide_blocks(text: str) -> list[Block]:
    """The fenced blocks of the quick start and the user guide: from GUIDE_FIRST_HEADING to the
    next level-1 heading."""
    blocks, inside = [], False
    for item in parse(text):
        if isinstance(item, Heading):
            if item.title == GUIDE_FIRST_HEADING:
                inside = True
            elif inside and item.level == 1 and item.title != "User guide":
                break
        elif inside:
            blocks.append(item)
    assert inside, f"README.md has no heading {GUIDE_FIRST_HEADING!r}"
    return blocks


def not_run_reason(command: str) -> str | None:
    for pattern, reason in NOT_RUN_HERE:
        if pattern.search(command):
            return reason
    return None


def deploykit_runs(command: str) -> list[list[str]]:
    """The deploykit invocations in a shell line (split at &&, ||, ;, |), as argument lists."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError as exc:
        raise AssertionError(f"{command!r} is not a valid shell line: {exc}") from None
    runs, current = [], []
    for token in tokens + [";"]:
        if token in SEPARATORS:
            if current and Path(current[0]).name == "deploykit":
                runs.append(current)
            current = []
        else:
            current.append(token)
    return runs


def outputs_of(argv: list[str]) -> list[str]:
    found = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in OUTPUT_OPTIONS:
            if eq:
                found.append(value)
            elif i + 1 < len(argv):
                found.append(argv[i + 1])
    return found


def collisions(commands: list[Command]) -> list[str]:
    """Outputs that an earlier command of the sequence already wrote, without --force."""
    written: dict[str, int] = {}
    problems = []
    for command in commands:
        for argv in deploykit_runs(command.text):
            for out in outputs_of(argv):
                if out in written and "--force" not in argv:
                    problems.append(f"line {command.line_no}: {out} was already written by the command "
                                    f"at line {written[out]}: `{command.text}` would exit 2")
                if command.writes:
                    written.setdefault(out, command.line_no)
    return problems


def _comparable(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines) and every decimal number a wildcard (errors
    and timings move from run to run and machine to machine; shapes, counts and names do not)."""
    return re.sub(r"\d+\.\d+(e[+-]?\d+)?", "#", " ".join(text.split()))


def shown_lines_missing(shown: list[str], printed: str) -> list[str]:
    """Shown output lines (not elisions, not table rows) that are not in what was printed."""
    flat = _comparable(printed)
    missing = []
    for line in shown:
        if not line.strip() or "..." in line or TABLE_CHARS & set(line):
            continue
        if _comparable(line) not in flat:
            missing.append(line)
    return missing


def json_example_mismatches(example, real, where="report") -> list[str]:
    """Where the README's example report differs from a real one in shape: keys, value types,
    and the example's rows (each must be a row of the real report, on the fields the example
    does not round). A string in a list stands for rows left out."""
    problems = []
    if isinstance(example, dict):
        if not isinstance(real, dict):
            return [f"{where}: the example has an object, the report {type(real).__name__}"]
        if set(example) != set(real):
            problems.append(f"{where}: keys differ: only in the example {sorted(set(example) - set(real))}, "
                            f"only in the report {sorted(set(real) - set(example))}")
        for key in set(example) & set(real):
            problems += json_example_mismatches(example[key], real[key], f"{where}.{key}")
    elif isinstance(example, list):
        if not isinstance(real, list):
            return [f"{where}: the example has a list, the report {type(real).__name__}"]
        rows = [row for row in example if not isinstance(row, str)]
        if len(rows) == len(example) and len(rows) != len(real):
            problems.append(f"{where}: {len(rows)} items in the example, {len(real)} in the report")
        for i, row in enumerate(rows):
            if isinstance(row, dict) and "backend" in row:
                exact = {k: v for k, v in row.items() if not isinstance(v, float)}
                same = [r for r in real if isinstance(r, dict) and exact.items() <= r.items()]
                if not same:
                    problems.append(f"{where}[{i}]: no row of the report has {exact}")
                else:
                    problems += json_example_mismatches(row, same[0], f"{where}[{i}]")
            elif i < len(real):
                problems += json_example_mismatches(row, real[i], f"{where}[{i}]")
    elif example is not None and real is not None:
        number = (int, float)
        if isinstance(example, number) and not isinstance(example, bool):
            if not (isinstance(real, number) and not isinstance(real, bool)):
                problems.append(f"{where}: the example has a number, the report {real!r}")
        elif type(example) is not type(real):
            problems.append(f"{where}: the example has {example!r}, the report {real!r}")
    return problems


# ------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_lands_on_a_heading(path):
    assert links(path.read_text()), f"{path} has no links: the parser found none"
    assert broken_links(path) == []


def test_the_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "README.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Its part\n")
    text = """# Title

[ok](#a-heading-with-code-and-punctuation) [ok](#twice-1) [ok](other.md#its-part) [web](https://x.org/#y)
`[in code](#nowhere)`

## A heading: with `code`, and punctuation!

## Twice

## Twice

```sh
# not a heading
```
"""
    assert broken_links(page, text) == []
    broken = text + "[a](#not-a-heading) [b](#not-a-heading-1) [c](missing.md) [d](other.md#nope) [e](#twice-2)\n"
    problems = broken_links(page, broken)
    assert len(problems) == 5, problems
    assert all("#not-a-heading" in p for p in problems[:1]) and "missing.md does not exist" in problems[2]


def test_slugs_are_githubs():
    assert slug("Set-up (a fresh CPU machine, Python 3.11+)") == "set-up-a-fresh-cpu-machine-python-311"
    assert slug("Checking an ONNX file without the model's code") == "checking-an-onnx-file-without-the-models-code"
    assert slug("Making the `.npz` for `--inputs`") == "making-the-npz-for---inputs"
    assert slug("`deploykit check SPEC [--onnx model.onnx]`") == "deploykit-check-spec---onnx-modelonnx"
    assert slug("An ONNX file made elsewhere: `deploykit convert`") == "an-onnx-file-made-elsewhere-deploykit-convert"


def test_the_anchors_code_and_tests_name_are_headings():
    """Headings that deploykit's code and other tests point readers at, and those of issue 23."""
    readme = READMES[0].read_text()
    for anchor in ["your-own-model", "dysample-export-strategies", "max-pool-indices-for-tensorrt",
                   "support-matrix-export-parity-and-latency", "exit-codes", "troubleshooting",
                   "checking-an-onnx-file-without-the-models-code", "making-the-npz-for---inputs",
                   "an-example-json-report", "the-onnx-runtime-custom-op-library", "the-tensorrt-plugin",
                   "the-fused-dysample-kernel"]:
        assert anchor in anchors(readme), anchor
    plugins = READMES[1].read_text()
    for anchor in ["the-fused-dysample-kernel", "the-onnx-runtime-custom-op-library", "the-tensorrt-plugin"]:
        assert anchor in anchors(plugins), anchor


def _all_commands() -> list[Command]:
    commands = []
    for path in READMES:
        for item in parse(path.read_text()):
            if isinstance(item, Block):
                commands += [s for s in snippets(item) if isinstance(s, Command)]
    return commands


def test_no_snippet_writes_a_file_an_earlier_one_wrote():
    commands = _all_commands()
    assert sum(len(deploykit_runs(c.text)) for c in commands) > 20, "the parser found few commands"
    assert collisions(commands) == []


def test_the_collision_check_catches_a_reused_name():
    block = Block("", """$ deploykit export a:b -o m.onnx
wrote m.onnx
$ deploykit export c:d --shape 1x3x8x8 -o m.onnx
$ deploykit export c:d -o m.onnx --force
$ deploykit check a:b --report r.json && deploykit check c:d --report=r.json
$ deploykit export e:f -o p.onnx
error: the exported graph of e:f does not compute what PyTorch computes at 3x8x41x49
$ deploykit export e:f -o p.onnx --static""".split("\n"), 1, ())
    commands = snippets(block)
    assert [c.expected_exit for c in commands] == [0, 0, 0, 0, 1, 0]
    problems = collisions(commands)
    assert len(problems) == 2, problems
    assert "m.onnx" in problems[0] and "line 4" in problems[0] and "r.json" in problems[1]


def test_snippet_rules_on_a_synthetic_guide():
    text = """# T

## Quick start: check your own model

```python
# net.py
x = 1
```

```python
class Excerpt: ...
```

```
$ deploykit check net:build --backends torch,trt
$ deploykit check x:y
...
parity FAILED: 1 of 2 comparisons
$ deploykit check --onnx f.onnx
error: missing argument 'SPEC'
```

```sh
python3 -m venv .venv && .venv/bin/pip install torch==2.13.0  # set-up
```

# Reference

```sh
deploykit build m.onnx -o m.engine
```
"""
    items = [s for b in guide_blocks(text) for s in snippets(b)]
    assert [type(i).__name__ for i in items] == ["PythonFile", "Command", "Command", "Command", "Command"]
    assert items[0].name == "net.py"
    assert [c.expected_exit for c in items[1:]] == [0, 1, 2, 0]
    assert [bool(not_run_reason(c.text)) for c in items[1:]] == [True, False, False, True]
    assert not_run_reason("deploykit build m.onnx -o m.engine") == "needs TensorRT and a GPU"
    wrapped = "wrote m.onnx\n(opset 17)\n"
    assert shown_lines_missing(["wrote m.onnx (opset 17)", "... rows", "│ ort │"], wrapped) == []
    assert shown_lines_missing(["wrote m.onnx (opset 18)"], "wrote m.onnx (opset 17)") == ["wrote m.onnx (opset 18)"]
    assert shown_lines_missing(["max error 5.38 at 1x3x64x96"], "max error 5.3 at 1x3x64x96") == []
    assert shown_lines_missing(["max error 5.38 at 1x3x64x96"], "max error 5.3 at 1x3x96x64") != []


def test_the_json_comparison_catches_a_drifted_example():
    real = {"schema_version": 2, "passed": False, "results": [
        {"backend": "torch", "shape": {"input": [1]}, "status": "passed", "max_abs": 0.0},
        {"backend": "ort", "shape": {"input": [1]}, "status": "failed", "max_abs": 0.69}]}
    example = {"schema_version": 2, "passed": False, "results": [
        {"backend": "ort", "shape": {"input": [1]}, "status": "failed", "max_abs": 0.7}, "... the passing row ..."]}
    assert json_example_mismatches(example, real) == []
    assert json_example_mismatches({**example, "old_key": 1}, real)
    assert json_example_mismatches({**example, "passed": "no"}, real)
    drifted = {**example, "results": [{**example["results"][0], "shape": [1]}]}
    assert json_example_mismatches(drifted, real)


def _guide_items() -> list[Command | PythonFile | Block]:
    items: list[Command | PythonFile | Block] = []
    for block in guide_blocks(READMES[0].read_text()):
        found = snippets(block)
        items += found if found else [block]
    return items


def test_what_is_not_run_here_is_said():
    """The guide's commands that test_the_guide_runs_as_written does not run, each with its rule
    (shown by pytest -rs); python blocks without a `# NAME.py` line are excerpts of a file."""
    said = []
    for item in _guide_items():
        if isinstance(item, Command) and not_run_reason(item.text):
            said.append(f"line {item.line_no}: `{item.text[:70]}...`: {not_run_reason(item.text)}")
        elif isinstance(item, Block) and item.lang == "python":
            said.append(f"line {item.line_no}: a python excerpt (no `# NAME.py` first line)")
    if said:
        pytest.skip("not run by test_the_guide_runs_as_written, by rule: " + "; ".join(said))


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path, ort_custom_ops):
    """About two minutes on 2 cores: some 25 commands, a dozen of them exports. The guide's
    outputs are those of a machine with deploykit's ONNX Runtime library (plugin graphs verified
    on ONNX Runtime): without one the test skips, saying why (ort_custom_ops)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(p for p in [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")] if p)}
    ran, not_run = [], []
    for item in _guide_items():
        if isinstance(item, PythonFile):
            assert not (tmp_path / item.name).exists(), f"line {item.line_no}: {item.name} is written twice"
            (tmp_path / item.name).write_text(item.text)
            continue
        if not isinstance(item, Command):
            continue
        reason = not_run_reason(item.text)
        if reason:
            not_run.append(f"line {item.line_no}: {reason}")
            continue
        for argv in deploykit_runs(item.text):
            for out in outputs_of(argv):
                assert "--force" in argv or not (tmp_path / out).exists(), (
                    f"README line {item.line_no}: `{item.text}` writes {out}, which an earlier snippet wrote")
        result = subprocess.run(["bash", "-c", item.text], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        printed = result.stdout + result.stderr
        assert result.returncode == item.expected_exit, (
            f"README line {item.line_no}: `{item.text}` exited {result.returncode}, the README shows "
            f"exit {item.expected_exit}:\n{printed[-4000:]}")
        missing = shown_lines_missing(item.shown, printed)
        assert not missing, f"README line {item.line_no}: `{item.text}` did not print {missing}:\n{printed[-4000:]}"
        ran.append(item)
    print(f"ran {len(ran)} commands; not run, by rule: {not_run}")
    assert len(ran) >= 20, f"only {len(ran)} commands ran: the guide's snippets were not all found"

    # The example JSON report is the shape of the report its command wrote.
    example_blocks = [b for b in guide_blocks(READMES[0].read_text()) if b.lang == "json"]
    assert len(example_blocks) == 1, "the guide should hold one example JSON report"
    block = example_blocks[0]
    reports = [out for item in ran for argv in deploykit_runs(item.text) for out in outputs_of(argv)
               if "--report" in argv and out.endswith(".json") and item.line_no < block.line_no]
    assert reports, "no command before the example JSON report writes a --report"
    real = json.loads((tmp_path / reports[-1]).read_text())
    assert json_example_mismatches(json.loads("\n".join(block.lines)), real) == []
