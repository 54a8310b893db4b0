"""The documentation stays true: the package map matches the tree, the README stays a front door, every relative
link resolves, and the README's quick start (the code blocks marked ``<!-- runnable -->``) runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
SRC = REPO / "src"
ARCHITECTURE = DOCS / "architecture.md"
MAX_README_LINES = 250
RUNNABLE = "<!-- runnable -->"
#: One row of the package map: | `repgls/training/trainer.py` | what it holds |
MAP_ROW = re.compile(r"^\|\s*`(repgls/[^`]+\.py)`\s*\|")
#: [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
#: Pages another change is writing: a link to one of them is not broken while it is missing (the pending test
#: below reports it as skipped); once the page exists its links are checked like any other.
PENDING_PAGES = {DOCS / "gpu.md"}


def _map_paths() -> list[str]:
    return [m.group(1) for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines()
            if (m := MAP_ROW.match(line))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line without inline code) of every line outside fenced code blocks."""
    out, in_fence = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((i, INLINE_CODE.sub("", line)))
    return out


def _relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for lineno, line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue  # http(s):, mailto:, ... and anchors within the page
            links.append((lineno, target.split("#", 1)[0]))
    return links


def runnable_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, language, code) of each fenced block whose preceding line is ``<!-- runnable -->``."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != RUNNABLE:
            continue
        assert i + 1 < len(lines), f"README line {i + 1}: {RUNNABLE} at the end of the file"
        m = re.match(r"^```(\w+)\s*$", lines[i + 1])
        assert m, f"README line {i + 1}: {RUNNABLE} must be followed by a ```python or ```bash fence"
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"README line {i + 2}: unclosed code block"
        blocks.append((i + 2, m.group(1), "\n".join(lines[i + 2:end]) + "\n"))
    return blocks


# ------------------------------------------------------------------------------------------ package map
def test_architecture_map_lists_every_module_and_only_modules_that_exist():
    listed = _map_paths()
    assert len(listed) == len(set(listed)), sorted({p for p in listed if listed.count(p) > 1})
    tree = {p.relative_to(SRC).as_posix() for p in (SRC / "repgls").rglob("*.py")}
    assert sorted(tree - set(listed)) == [], "modules missing from the package map of docs/architecture.md"
    assert sorted(set(listed) - tree) == [], "rows of docs/architecture.md naming modules that do not exist"


def test_architecture_map_rows_say_what_the_module_holds():
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if MAP_ROW.match(line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) >= 2 and len(cells[1]) >= 10, line


# --------------------------------------------------------------------------------------------- README
def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    assert "make demo" in text and "make test" in text
    for page in ("mining", "rates", "phantom", "data", "training", "evaluation", "bench", "schemas", "results",
                 "development", "architecture"):
        assert f"(docs/{page}.md)" in text, f"README does not link docs/{page}.md"


# ---------------------------------------------------------------------------------------------- links
def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _missing(path: Path, target: str) -> bool:
    dest = (path.parent / target).resolve()
    return not dest.exists() and dest not in PENDING_PAGES


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(path):
    broken = [(n, t) for n, t in _relative_links(path) if t and _missing(path, t)]
    assert broken == [], f"{path.relative_to(REPO)}: links to missing files (line, target)"


@pytest.mark.parametrize("page", sorted(PENDING_PAGES), ids=lambda p: p.relative_to(REPO).as_posix())
def test_pending_page_exists(page):
    if not page.exists():
        pytest.skip(f"{page.relative_to(REPO)} is linked but not written yet (another change writes it)")
    assert page.read_text(encoding="utf-8").strip()


def test_link_finder_sees_links_and_skips_code():
    text = ("See [a](a.md#sec), ![img](pic.png), [web](https://example.org), [here](#top).\n"
            "`[not](code.md)`\n```\n[not](fenced.md)\n```\n")
    assert [t for _, line in _prose_lines(text) for t in LINK.findall(line)] == [
        "a.md#sec", "pic.png", "https://example.org", "#top"]


# --------------------------------------------------------------------------------- runnable quick start
def test_readme_has_a_runnable_python_and_bash_quick_start():
    langs = [lang for _, lang, _ in runnable_blocks(README.read_text(encoding="utf-8"))]
    assert "python" in langs and "bash" in langs, langs


def test_runnable_block_finder():
    text = f"a\n{RUNNABLE}\n```bash\necho hi\n```\n```python\nnot = 'marked'\n```\n"
    assert runnable_blocks(text) == [(3, "bash", "echo hi\n")]


def _run_block(lang: str, code: str, workdir: Path) -> subprocess.CompletedProcess:
    (workdir / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "REPGLS_PROGRESS"}  # no progress bars in the logs
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    elif lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        raise AssertionError(f"runnable block in {lang!r}: only python and bash blocks can run")
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("line,lang,code", runnable_blocks(README.read_text(encoding="utf-8")),
                         ids=lambda v: str(v) if isinstance(v, int) else None)
def test_readme_runnable_block_runs(line, lang, code, tmp_path):
    res = _run_block(lang, code, tmp_path)
    assert res.returncode == 0, (f"README block at line {line} ({lang}) failed:\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


# ------------------------------------------------------------------------------- every command line in the docs
#: A shell variable set in a block (``R=src/...``), used by the lines after it.
SHELL_VAR = re.compile(r"^([A-Z_]+)=(\S+)\s*(#.*)?$")
#: A synopsis, not a command: optional parts in [brackets] or alternatives a|b.
SYNOPSIS = re.compile(r"\s\[|\S\|\S")


def doc_command_lines() -> list[tuple[str, int, str]]:
    """(page, line, ``repgls ...`` arguments) of every repgls command in the bash blocks of README.md and docs/*.md
    (continuation lines joined, comments and shell variables of the block resolved, synopses skipped)."""
    out = []
    for path in _markdown_files():
        lines, in_bash, env = path.read_text(encoding="utf-8").splitlines(), False, {}
        i = 0
        while i < len(lines):
            start, line = i + 1, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            if FENCE.match(line):
                in_bash, env = line.strip() == "```bash" and not in_bash, {}
                continue
            if not in_bash:
                continue
            if m := SHELL_VAR.match(line.strip()):
                env[m.group(1)] = m.group(2)
                continue
            code = re.sub(r"(^|\s)#.*$", "", line).strip()
            for var, value in env.items():
                code = code.replace(f"${var}", value)
            m = re.search(r"(?:^|\|\s*|-m\s+)repgls(?:\.cli)?\s+(.*)$", code)
            if m and not SYNOPSIS.search(m.group(1)):
                out.append((path.relative_to(REPO).as_posix(), start, m.group(1)))
    return out


def _parse_command_line(args: list[str]) -> dict:
    """Parse ``repgls ARGS`` with the real CLI (options, arguments, sub-commands) without running it."""
    import typer

    from repgls.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("repgls", list(args))
    while hasattr(group, "resolve_command"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, group, rest = group.resolve_command(ctx, rest)
        ctx = group.make_context(name, rest, parent=ctx)
    return ctx.params


def test_every_repgls_command_in_the_docs_parses_and_names_files_that_exist():
    """Issue #13 row 10: a command line a user pastes from the docs has only options that exist, every required
    argument, and every repository file it names (configs/..., src/...) exists in a fresh clone."""
    import shlex

    found = doc_command_lines()
    assert len(found) >= 40 and any(p == "README.md" for p, _, _ in found)
    for page, line, text in found:
        args = shlex.split(text)
        try:
            _parse_command_line(args)
        except Exception as e:  # click's UsageError and friends
            raise AssertionError(f"{page}:{line}: `repgls {text}`: {e}") from None
        for arg in args:
            for ref in re.findall(r"\b((?:configs|src|benchmarks)/[\w./-]+)", arg):
                assert (REPO / ref).exists(), f"{page}:{line}: `repgls {text}` names {ref}, which does not exist"
