"""The house keeps its shape: no import cycle, no library import of the CLI, short functions and files, a stage
function for every stage, and one registration to add a loss, a metric or a model family."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
MAX_FUNCTION_LINES = 120
MAX_FILE_LINES = 700
#: The phantom renderer draws anatomy and findings in long, straight-line numeric code (one function per film).
FUNCTION_LENGTH_EXEMPT = {("repgls.data.phantom.render", "_density")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "repgls").rglob("*.py")):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """repgls modules ``name`` imports anywhere (module level or inside functions; TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_and_no_library_import_of_the_cli():
    graph = _graph()
    assert len(graph) > 50  # the walk saw the package
    assert _cycles(graph) == []
    offenders = {m: sorted(t for t in ts if t.startswith("repgls.cli"))
                 for m, ts in graph.items() if not m.startswith("repgls.cli")}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_functions_and_files_are_short():
    long_functions, long_files = [], []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append((name, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and (name, node.name) not in FUNCTION_LENGTH_EXEMPT:
                    long_functions.append((name, node.name, n))
    assert long_functions == []
    assert long_files == []


def test_every_stage_is_a_function_of_its_name():
    import repgls

    for stage in repgls.STAGES:
        fn = getattr(repgls, stage)
        assert inspect.isfunction(fn), stage
        assert fn.__doc__, stage
    # importing every package does not shadow a stage function (no run-time class swapping anywhere)
    import repgls.benchmarking
    import repgls.data.phantom
    import repgls.evaluation
    import repgls.mining.compare
    import repgls.rating
    import repgls.training

    for stage in repgls.STAGES:
        assert inspect.isfunction(getattr(repgls, stage)), stage
    assert repgls.rates is repgls.rating.rates
    assert repgls.train is repgls.training.train
    assert repgls.evaluate is repgls.evaluation.evaluate
    assert repgls.bench is repgls.benchmarking.bench


def test_every_stage_is_a_cli_command():
    from repgls.cli import app

    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    import repgls

    cli_name = {"evaluate": "eval"}
    assert {cli_name.get(s, s) for s in repgls.STAGES} <= commands


# ------------------------------------------------------------------------------------ registrations
torch = pytest.importorskip("torch")


class _ToyNet(torch.nn.Module):
    """A two-convolution classifier: a model family repgls has never heard of."""

    def __init__(self, num_classes: int, in_chans: int = 1, img_size: int | None = None) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(in_chans, 8, 3, stride=2, padding=1)
        self.conv = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.conv(torch.relu(self.stem(x))))
        return self.head(f.mean(dim=(2, 3)))


@pytest.fixture()
def toy_registrations():
    """Register a toy loss, metric, model and model family; unregister them afterwards."""
    import numpy as np

    from repgls import losses, metrics, models

    calls = {"gradcam": 0, "loss": 0}

    @losses.register_loss("toy-squared")
    class ToySquaredLoss(losses.MaskedLoss):
        """Squared error between the probability and the label (a toy)."""

        def elementwise(self, outputs, batch):
            calls["loss"] += 1
            y, _, _ = losses.targets(outputs, batch)
            return (torch.sigmoid(outputs["logits"].float()) - y) ** 2

    def positive_rate(y, s, *, typical=None, thresholds=None):
        return float(np.nanmean(np.where(np.isfinite(y), s > 0.5, np.nan)))

    metrics.register_metric("toy_positive_rate", "Toy positive rate", False, positive_rate,
                            sides=("truth", "reference"))

    def toy_cam(net):
        calls["gradcam"] += 1
        return [net.stem], None  # the first convolution: not the fallback (last conv) of explain.py

    models.register_family("toy", _ToyNet, toy_cam)
    models.register_model("toy_net", builder=_ToyNet, test_img_size=64, doc="a toy CNN")
    yield calls
    losses.LOSSES.pop("toy-squared")
    metrics.METRICS.pop("toy_positive_rate")
    models.FAMILIES.pop("toy")
    models.MODELS.pop("toy_net")


def test_a_loss_a_metric_and_a_model_family_are_one_registration_each(toy_registrations, tiny_run, tmp_path):
    """Registered once, the toy loss trains a run of the toy model, the toy metric is in metrics.json, in the
    ``repgls eval`` output and in the bench table, and ``repgls eval --cams`` uses the toy family's layer."""
    from typer.testing import CliRunner

    import repgls
    from repgls.benchmarking import bench_table
    from repgls.cli import app
    from repgls.losses import LOSSES, list_losses

    assert "toy-squared" in list_losses()
    assert LOSSES["toy-squared"].description == "Squared error between the probability and the label (a toy)."
    run = repgls.train(REPO / "configs" / "phantom-tiny.yaml", overrides=[
        f"data.cache_dir={tiny_run['cache']}", f"data.labels={tiny_run['labels']}", "data.batch_size=16",
        "data.augment=false", "model.name=toy_net", "loss.name=toy-squared", "loss.kwargs={}", "train.max_steps=3",
        "train.epochs=1", "train.progress=false", "train.device=cpu", f"output.run_dir={tmp_path / 'run'}"])
    assert toy_registrations["loss"] >= 3
    res = CliRunner().invoke(app, ["eval", str(run), "--n-boot", "5", "--cams", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "Toy positive rate" in res.output
    assert toy_registrations["gradcam"] >= 1
    assert len(list((run / "eval-test" / "cams").glob("*.png"))) == 2
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    for side in ("vs_reference", "vs_truth"):
        summary = metrics[side]["summary"]
        assert 0.0 <= summary["toy_positive_rate"] <= 1.0
        assert len(summary["toy_positive_rate_ci"]) == 2
    table = bench_table({"toy": [metrics]})
    assert table.loc["toy", "toy_positive_rate_truth_mean"] == pytest.approx(
        metrics["vs_truth"]["summary"]["toy_positive_rate"])
    assert "toy_positive_rate_reference_mean" in table.columns
