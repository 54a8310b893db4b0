"""Issue #13, the CLI-wide sweep: every command's file arguments given a missing, an empty and a wrong-format file
(binary bytes, a truncated Parquet, malformed YAML, a file where a folder is expected), and every output place
made unwritable. Each must fail with exit 2 and one line on stderr naming the path, without a traceback and
without leaving anything behind; an interrupted command says so in one line and exits 130."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cli_checks import assert_one_line_error, invoke, tree

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "phantom-tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Bad inputs, by kind: ``missing`` (never created), ``empty`` (0 bytes), ``binary`` (random bytes with
    NULs), ``truncated`` (the first 300 bytes of a real Parquet file), ``malformed`` (YAML that does not parse),
    ``folder`` (an empty folder where a file is expected), ``file`` (a text file where a folder is expected)."""
    d = tmp_path_factory.mktemp("bad")
    rng = random.Random(13)
    noise = bytes([0, 1, 2]) + bytes(rng.randrange(256) for _ in range(4000))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"study_id": [str(i) for i in range(500)], "finding": ["Edema"] * 500}),
                   d / "whole.parquet")
    out = {"folder": d / "empty_folder", "file": d / "plain.txt"}
    out["folder"].mkdir()
    out["file"].write_text("a line of text\n")
    for ext in ("csv", "parquet", "yaml", "jsonl", "png", "txt"):
        out[f"missing.{ext}"] = d / f"missing.{ext}"
        (d / f"empty.{ext}").write_bytes(b"")
        out[f"empty.{ext}"] = d / f"empty.{ext}"
        (d / f"binary.{ext}").write_bytes(noise)
        out[f"binary.{ext}"] = d / f"binary.{ext}"
    (d / "truncated.parquet").write_bytes((d / "whole.parquet").read_bytes()[:300])
    out["truncated.parquet"] = d / "truncated.parquet"
    (d / "malformed.yaml").write_text("classes: [a, b\n  - c: {\n")
    out["malformed.yaml"] = d / "malformed.yaml"
    return out


def _cases(kind: str) -> list[str]:
    """The bad inputs that stand for a ``kind`` of argument."""
    return {"csv": ["missing.csv", "empty.csv", "binary.csv"],
            "parquet": ["missing.parquet", "empty.parquet", "truncated.parquet", "binary.parquet"],
            "yaml": ["missing.yaml", "empty.yaml", "binary.yaml", "malformed.yaml"],
            "jsonl": ["empty.jsonl", "binary.jsonl"],
            "txt": ["empty.txt", "binary.txt"],
            "image": ["missing.png", "empty.png", "binary.png"],
            "folder": ["missing.csv", "file", "folder"]}[kind]


#: (command line, kind of the bad argument {F}); {O}: an output in a fresh folder; {W}/{R}/{L}/{C}/{RUN}/{CFG}:
#: the tiny run's world folder, reports.csv, findings.parquet, labels.parquet, cache, run folder, a config.
ARGUMENTS = [
    ("phantom --out {O}/w --n 4 --size 32 --config {F}", "yaml"),
    ("phantom --out {O}/w --n 4 --size 32 --prevalence {F}", "csv"),
    ("mine {F} --out {O}/f.parquet", "csv"),
    ("mine {F} --out {O}/f.parquet", "parquet"),
    ("mine {F} --out {O}/f.parquet", "jsonl"),
    ("mine {F} --out {O}/f.parquet", "txt"),
    ("mine {R} --out {O}/f.parquet --vocab {F}", "yaml"),
    ("compare {F} {L}", "parquet"),
    ("compare {L} {F}", "parquet"),
    ("compare {L} {L} --vocab {F}", "yaml"),
    ("audit {F} --reports {R} --out {O}/a.html", "parquet"),
    ("audit {L} --reports {F} --out {O}/a.html --text-col findings,impression", "csv"),
    ("audit {L} --reports {R} --compare {F} --out {O}/a.html --text-col findings,impression", "parquet"),
    ("rates {F} --out {O}/l.parquet", "parquet"),
    ("rates {F} --out {O}/l.parquet", "csv"),
    ("rates {L} --out {O}/l.parquet --studies {F}", "csv"),
    ("rates {L} --out {O}/l.parquet --vocab {F}", "yaml"),
    ("rates {L} --out {O}/l.parquet --rgn {F}", "folder"),
    ("rgn train {F} --out {O}/rgn", "parquet"),
    ("rgn train {F} --out {O}/rgn", "csv"),
    ("rgn predict {L} --rgn {F} --out {O}/r.parquet", "folder"),
    ("prepare table --root {F} --out {O}/cache --size 32", "csv"),
    ("prepare table --root {F} --out {O}/cache --size 32", "parquet"),
    ("prepare phantom --root {F} --out {O}/cache --size 32", "folder"),
    ("train --config {F}", "yaml"),
    ("train --config {CFG} data.labels={F} output.run_dir={O}/run", "parquet"),
    ("train --config {CFG} data.cache_dir={F} output.run_dir={O}/run", "folder"),
    ("eval {F} --out {O}/e", "folder"),
    ("eval {RUN} --truth {F} --out {O}/e --n-boot 0 --cams 0", "parquet"),
    ("eval {RUN} --findings {F} --reference findings --out {O}/e --n-boot 0 --cams 0", "parquet"),
    ("eval {RUN} --reference {F} --out {O}/e --n-boot 0 --cams 0", "parquet"),
    ("predict {F} {W}/images --out {O}/p.parquet", "folder"),
    ("predict {RUN} {F} --out {O}/p.parquet", "image"),
    ("export {F} --out {O}/x", "folder"),
    ("bench --config {F}", "yaml"),
    ("serve {F}", "folder"),
]
#: Where each command writes, and the command line that writes there ({U}: a place nothing can be written in).
OUTPUTS = [
    "phantom --out {U}/w --n 4 --size 32",
    "mine {R} --out {U}/f.parquet",
    "compare {L} {L} --out {U}/c.csv",
    "audit {L} --reports {R} --out {U}/a.html --text-col findings,impression",
    "rates {L} --out {U}/l.parquet",
    "rgn train {L} --out {U}/rgn",
    "rgn predict {L} --rgn {O} --out {U}/r.parquet",
    "prepare phantom --root {W} --out {U}/cache --size 32",
    "train --config {CFG} output.run_dir={U}/run",
    "eval {RUN} --out {U}/e --n-boot 0 --cams 0",
    "predict {RUN} {W}/images --out {U}/p.parquet",
    "predict {RUN} {W}/images --out {O}/p.parquet --cam --cam-dir {U}/cams",
    "export {RUN} --out {U}/x",
    "bench --config {BENCH} --out {U}/bench",
    "demo --out {U}/demo",
]


@pytest.fixture(scope="module")
def world(tiny_run, tmp_path_factory) -> dict[str, Path]:
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg.write_text(TINY.read_text().replace("out/phantom-tiny/cache", str(tiny_run["cache"]))
                   .replace("out/phantom-tiny/labels.parquet", str(tiny_run["labels"])))
    return {"W": tiny_run["world"], "R": tiny_run["world"] / "reports.csv", "L": tiny_run["findings"],
            "C": tiny_run["cache"], "RUN": tiny_run["run"], "CFG": cfg,
            "BENCH": REPO / "configs" / "bench" / "phantom-small.yaml"}


def _args(line: str, **paths: Path) -> list[str]:
    for key, value in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        line = line.replace("{" + key + "}", str(value))
    assert "{" not in line, line
    return line.split()


def _id(case: tuple[str, str]) -> str:
    return case[0].split(" {")[0].replace(" ", "-") + ":" + case[1]


@pytest.mark.parametrize("line,kind", ARGUMENTS, ids=[_id(c) for c in ARGUMENTS])
def test_bad_file_arguments_fail_in_one_line_naming_them(line, kind, bad, world, tmp_path) -> None:
    for case in _cases(kind):
        out = tmp_path / case.replace(".", "_")
        out.mkdir()
        before = tree(tmp_path)
        res = invoke(*_args(line, F=bad[case], O=out, **world))
        assert_one_line_error(res, bad[case])
        assert tree(tmp_path) == before, (case, tree(tmp_path) - before)  # nothing half-made left


@pytest.mark.parametrize("line", OUTPUTS, ids=[o.split(" {")[0].replace(" ", "-") for o in OUTPUTS])
def test_unwritable_output_places_fail_before_any_work(line, unwritable_place, world, tmp_path) -> None:
    before = tree(tmp_path)
    res = invoke(*_args(line, U=unwritable_place, O=tmp_path, **world))
    assert_one_line_error(res, unwritable_place)
    assert tree(tmp_path) == before


#: Per command: its line and the library function that does the work, ``module:name`` (interrupted by a simulated
#: Ctrl-C).
INTERRUPTED = [
    ("phantom --out {O}/w --n 4 --size 32", "repgls.data.phantom:make_phantom"),
    ("mine {R} --out {O}/f.parquet", "repgls.mining:mine_to_file"),
    ("compare {L} {L}", "repgls.mining.compare:compare_findings"),
    ("audit {L} --reports {R} --out {O}/a.html", "repgls.mining.audit:audit_page"),
    ("rates {L} --out {O}/l.parquet", "repgls.rating:rates"),
    ("rgn train {L} --out {O}/rgn", "repgls.rating.rgn:train_rgn"),
    ("prepare phantom --root {W} --out {O}/cache --size 32", "repgls.data.cache:prepare"),
    ("train --config {CFG} output.run_dir={O}/run", "repgls.training:train"),
    ("eval {RUN} --out {O}/e --n-boot 0 --cams 0", "repgls.evaluation:evaluate"),
    ("predict {RUN} {W}/images --out {O}/p.parquet", "repgls.evaluation:predict"),
    ("export {RUN} --out {O}/x", "repgls.evaluation.export:export"),
    ("bench --config {BENCH} --out {O}/bench", "repgls.benchmarking:bench"),
    ("demo --out {O}/demo", "repgls.benchmarking.demo:demo"),
    ("serve {O}", "repgls.mining.server:serve"),
]


@pytest.mark.parametrize("line,target", INTERRUPTED, ids=[i[0].split(" {")[0].replace(" ", "-") for i in INTERRUPTED])
def test_an_interrupted_command_says_so_in_one_line(line, target, world, tmp_path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import importlib

    module, name = target.split(":")
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)  # a module may share a function's name
    res = invoke(*_args(line, O=tmp_path, **world))
    assert res.exit_code == 130, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert res.stderr.strip() == "interrupted"
    assert tree(tmp_path) == set()


def test_an_interrupted_phantom_leaves_no_half_world(tmp_path, monkeypatch) -> None:
    """Ctrl-C while the films are being rendered: one line, exit 130, and the world folder it had begun is gone."""
    import repgls.data.phantom.world as world_mod

    calls = []
    render = world_mod._render_chunk

    def render_then_interrupt(chunk):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(chunk)

    monkeypatch.setattr(world_mod, "_render_chunk", render_then_interrupt)
    res = invoke("phantom", "--out", tmp_path / "w", "--n", "40", "--size", "32")
    assert res.exit_code == 130 and res.stderr.strip() == "interrupted", res.output
    assert len(calls) == 2 and tree(tmp_path) == set()
