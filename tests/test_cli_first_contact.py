"""Issue #13, first contact: one test per row of the issue, through the CLI. A bad input gets one clear line on
stderr naming the path (exit 2), no traceback, and nothing half-made is left; the CheXpert labeler drop-in reads
the labeler's own input. (Row 8, ``repgls serve``, is in test_llm_tiny.py; the CLI-wide sweep in
test_cli_sweep.py; the labeler's real sample files in test_mining_external.py.)"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cli_checks import assert_one_line_error, invoke, tree

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "phantom-tiny.yaml"
#: A short, CPU-only training of the tiny run's world.
FAST = ["data.batch_size=16", "data.augment=false", "train.max_steps=2", "train.epochs=1", "train.progress=false",
        "train.device=cpu", "train.checkpoint_every=null", "optim.warmup_steps=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train_args(tiny_run, run_dir: Path, *overrides: str, labels: Path | None = None) -> list[str]:
    return ["train", "--config", TINY, f"data.cache_dir={tiny_run['cache']}",
            f"data.labels={labels or tiny_run['labels']}", f"output.run_dir={run_dir}", *FAST, *overrides]


def _labels_of_other_studies(tiny_run, path: Path) -> Path:
    import numpy as np

    from repgls.rating import read_labels, write_labels

    table = read_labels(tiny_run["labels"])
    table.study_ids = np.array([f"elsewhere-{i}" for i in range(len(table.study_ids))])
    write_labels(table, path)
    return path


# ----------------------------------------------------------------------------------------------------- row 1
def test_row1_train_refuses_labels_that_match_no_cached_image(tiny_run, tmp_path) -> None:
    labels = _labels_of_other_studies(tiny_run, tmp_path / "other.parquet")
    before = tree(tmp_path)
    res = invoke(*_train_args(tiny_run, tmp_path / "run", labels=labels))
    line = assert_one_line_error(res, labels, tiny_run["cache"])
    assert re.search(r"only 0 of the \d+ 'train' images", line), line
    assert "'elsewhere-0', 'elsewhere-1'" in line and line.count("'s0") == 2  # two ids from each side
    assert tree(tmp_path) == before  # no run folder


def test_row1_eval_writes_strict_json_and_a_failed_eval_leaves_no_half_folder(tiny_run, tmp_path,
                                                                             monkeypatch) -> None:
    """Scored against labels that cover none of its images, the metrics are undefined: metrics.json says null
    (strict JSON, no NaN). An eval that fails while writing (a full disk) leaves no half folder."""
    labels = _labels_of_other_studies(tiny_run, tmp_path / "other.parquet")
    res = invoke("eval", tiny_run["run"], "--reference", labels, "--out", tmp_path / "e", "--n-boot", "0",
                 "--cams", "0", "--no-report", "--device", "cpu")
    assert res.exit_code == 0, res.output

    def no_nan(token: str):
        raise AssertionError(f"metrics.json holds {token}: not strict JSON")

    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text(), parse_constant=no_nan)
    assert metrics["vs_reference"]["summary"]["mean_auc"] is None

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "e2" / "cams" / "x.png"))

    monkeypatch.setattr("repgls.explain.save_cam_pngs", disk_full)
    before = tree(tmp_path)
    res = invoke("eval", tiny_run["run"], "--out", tmp_path / "e2", "--n-boot", "0", "--cams", "2", "--no-report",
                 "--device", "cpu")
    assert_one_line_error(res, tmp_path / "e2" / "cams" / "x.png", "No space left on device")
    assert tree(tmp_path) == before  # neither e2/ nor its temporary folder


# ----------------------------------------------------------------------------------------------------- row 2
def test_row2_unwritable_outputs_fail_before_any_work(tiny_run, unwritable_place, tmp_path, monkeypatch) -> None:
    """rates, phantom, prepare, train, eval, predict: one line naming the place, exit 2, and no work done first
    (the phantom is not simulated, no model is loaded, no dataset indexed)."""

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output place was checked")

    import importlib

    for module, name in (("repgls.data.phantom.world", "_simulate"), ("repgls.evaluation.run", "load_run"),
                         ("repgls.evaluation.predict", "load_run"), ("repgls.data.adapters", "create_dataset"),
                         ("repgls.rating.build", "read_findings")):  # the module, not a same-named function
        monkeypatch.setattr(importlib.import_module(module), name, no_work, raising=False)
    monkeypatch.setattr(importlib.import_module("repgls.training.trainer").Trainer, "_setup_data", no_work)
    u = unwritable_place
    cfg_overrides = [f"data.cache_dir={tiny_run['cache']}", f"data.labels={tiny_run['labels']}"]
    for args in (["rates", tiny_run["findings"], "--out", u / "labels.parquet"],
                 ["phantom", "--out", u / "world", "--n", "4", "--size", "32"],
                 ["prepare", "phantom", "--root", tiny_run["world"], "--out", u / "cache", "--size", "32"],
                 ["train", "--config", TINY, *cfg_overrides, f"output.run_dir={u / 'run'}"],
                 ["eval", tiny_run["run"], "--out", u / "eval"],
                 ["predict", tiny_run["run"], tiny_run["world"] / "images", "--out", u / "p.parquet"]):
        res = invoke(*args)
        assert_one_line_error(res, u)
    assert tree(tmp_path) == set()


# ----------------------------------------------------------------------------------------------------- row 3
REPORTS = ["No acute cardiopulmonary process. No effusion or pneumothorax.",
           "1. Large right pleural effusion.\n\n2. Cardiomegaly without overt edema.",
           "Patchy opacity at the left base, may reflect atelectasis or pneumonia.",
           "Stable mild cardiomegaly. Clear lungs."]


def _headerless(path: Path, reports: list[str]) -> Path:
    pd.DataFrame({0: reports}).to_csv(path, header=False, index=False)  # the labeler's input: one column
    return path


def test_row3_chexpert_labeler_input_is_read_as_the_labeler_reads_it(tmp_path) -> None:
    src = _headerless(tmp_path / "sample_reports.csv", REPORTS)
    res = invoke("mine", src, "--format", "chexpert-csv", "--out", tmp_path / "labeled.csv")
    assert res.exit_code == 0, res.output
    assert "no header row" in res.stderr and "4 reports" in res.stderr
    got = pd.read_csv(tmp_path / "labeled.csv", dtype=str, keep_default_na=False)
    assert got["Reports"].tolist() == REPORTS  # every report kept, the first one too, in order
    assert got.loc[1, "Pleural Effusion"] == "1.0" and got.loc[0, "Pleural Effusion"] == "0.0"
    assert got.loc[2, "Pneumonia"] == "-1.0"
    # a one-word report reads like a column name: --no-header says it is not
    short = _headerless(tmp_path / "short.csv", ["Cardiomegaly.", "Normal."])
    res = invoke("mine", short, "--format", "chexpert-csv", "--out", tmp_path / "short_out.csv")
    line = assert_one_line_error(res, short)
    assert "--no-header" in line
    res = invoke("mine", short, "--no-header", "--format", "chexpert-csv", "--out", tmp_path / "short_out.csv")
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "short_out.csv")["Reports"].tolist() == ["Cardiomegaly.", "Normal."]
    # --header: the first row is a header, whatever it reads like
    res = invoke("mine", src, "--header", "--format", "chexpert-csv", "--out", tmp_path / "h.csv",
                 "--text-col", REPORTS[0])
    assert res.exit_code == 0 and len(pd.read_csv(tmp_path / "h.csv")) == 3


def test_row3_a_header_that_is_report_text_is_never_printed(tmp_path) -> None:
    src = tmp_path / "two.csv"
    pd.DataFrame({0: ["s1", "s2"], 1: REPORTS[:2]}).to_csv(src, header=False, index=False)
    res = invoke("mine", src, "--out", tmp_path / "f.parquet")
    line = assert_one_line_error(res, src)
    assert "columns are: s1, <" in line and "effusion" not in line.lower()


# ----------------------------------------------------------------------------------------------------- row 4
def test_row4_a_failed_train_start_leaves_nothing_and_the_corrected_rerun_runs(tiny_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    res = invoke(*_train_args(tiny_run, run_dir, "data.vocab=nih14"))  # the labels are chexpert14
    assert_one_line_error(res, "data.vocab", "nih14")
    assert not run_dir.exists()
    res = invoke(*_train_args(tiny_run, run_dir))
    assert res.exit_code == 0, res.output
    assert (run_dir / "checkpoints" / "best.json").is_file()


def test_row4_a_start_killed_before_training_is_recognised_by_the_next(tiny_run, tmp_path) -> None:
    from repgls.training.run_folder import never_trained

    run_dir = tmp_path / "run"
    (run_dir / "tb").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model: {}\n")
    (run_dir / "metrics.jsonl").write_text("")
    assert never_trained(run_dir)
    res = invoke(*_train_args(tiny_run, run_dir))
    assert res.exit_code == 0, res.output
    assert not never_trained(run_dir)  # it trained: a third start is refused
    res = invoke(*_train_args(tiny_run, run_dir))
    assert_one_line_error(res, run_dir, "exists and is not empty")


# ----------------------------------------------------------------------------------------------------- row 5
def test_row5_unreadable_inputs_name_the_file_and_never_echo_bytes(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    pq.write_table(pa.table({"report": ["Small effusion."] * 200}), tmp_path / "whole.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "whole.parquet").read_bytes()[:200])
    for name, says in (("empty.csv", "empty file"), ("binary.csv", "binary content"),
                       ("cut.parquet", "truncated"), ("missing.jsonl", "no such file")):
        before = tree(tmp_path)
        res = invoke("mine", tmp_path / name, "--out", tmp_path / "f.parquet")
        line = assert_one_line_error(res, tmp_path / name, says)
        assert line.isprintable() and line.isascii(), line
        assert tree(tmp_path) == before


# ----------------------------------------------------------------------------------------------------- row 6
def test_row6_rates_takes_the_vocabulary_of_the_findings(tmp_path) -> None:
    src = tmp_path / "reports.csv"
    pd.DataFrame({"study_id": ["a", "b"], "report": ["Right pleural effusion.", "No nodule."]}).to_csv(src)
    assert invoke("mine", src, "--vocab", "nih14", "--out", tmp_path / "f.parquet").exit_code == 0
    res = invoke("rates", tmp_path / "f.parquet", "--out", tmp_path / "l.parquet")
    assert res.exit_code == 0, res.output
    assert "(nih14)" in res.stderr
    assert "label:Effusion" in pd.read_parquet(tmp_path / "l.parquet").columns
    res = invoke("rates", tmp_path / "f.parquet", "--vocab", "chexpert14", "--out", tmp_path / "l2.parquet")
    line = assert_one_line_error(res, tmp_path / "f.parquet")
    assert "mined with vocabulary 'nih14', not 'chexpert14'" in line and "--vocab nih14" in line
    assert not (tmp_path / "l2.parquet").exists()


# ----------------------------------------------------------------------------------------------------- row 7
def test_row7_ctrl_c_during_mine_with_workers_is_one_line_and_exit_130(tmp_path) -> None:
    src = tmp_path / "reports.txt"
    line = "Mild cardiomegaly. Small left pleural effusion, possibly atelectasis. No pneumothorax.\n"
    src.write_text(line * 400_000)  # minutes of mining: the interruption comes first
    out = tmp_path / "findings.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "repgls.cli", "mine", str(src), "--workers", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{out}.part").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # the pool is up and mining
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.txt"]  # no output, no .part


# ---------------------------------------------------------------------------------------------------- row 11
def _all_commands() -> list[list[str]]:
    from typer.main import get_command

    from repgls.cli import app

    root = get_command(app)
    out: list[list[str]] = [[]]
    for name, cmd in root.commands.items():
        out.append([name])
        out.extend([name, sub] for sub in getattr(cmd, "commands", {}))
    return out


def test_row11_help_reads_cleanly_at_80_columns() -> None:
    from typer.main import get_command

    from repgls.cli import app

    root = get_command(app)
    commands = _all_commands()
    assert len(commands) >= 16
    for path in commands:
        res = invoke(*path, "--help")
        assert res.exit_code == 0, (path, res.output)
        text = res.output
        long = [line for line in text.splitlines() if len(line) > 80]
        assert long == [], (path, long)
        cut = [line for line in text.splitlines() if "…" in line or (not line.startswith("Usage:")
                                                                     and re.search(r"[a-z,]\.\.\.$", line))]
        assert cut == [], (path, cut)  # no summary or option name cut short
        assert not re.search(r"<(str|bool|int|float|path|Path|int range|float range|list\[\w+\])>", text), path
        assert not re.search(r"\{[a-z_]+\}", text), path
        assert not set("╭╮╰╯│") & set(text), path  # no boxes: the same text in a log file
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        for param in cmd.params:  # every option's full name is there, uncut
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--"):
                    assert re.search(rf"{re.escape(opt)}\b", text), (path, opt)
        if path and not getattr(cmd, "commands", None):
            assert "Example: repgls " + " ".join(path) in text, path
