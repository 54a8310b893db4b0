"""Package foundation: version, vocabularies, findings schema, light start-up."""

import subprocess
import sys

import pyarrow as pa
import pytest

import repgls
from repgls.mining.schema import FINDINGS_COLUMNS, empty_findings_table, validate_findings
from repgls.vocab import load_vocab


def test_version_and_cli_version():
    out = subprocess.run([sys.executable, "-m", "repgls.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"repgls {repgls.__version__}"


@pytest.mark.parametrize("name,k,head", [("chexpert14", 14, "Cardiomegaly"), ("nih14", 14, "Effusion"),
                                         ("ltml39", 39, "Pleural Effusion")])
def test_builtin_vocabs(name, k, head):
    v = load_vocab(name)
    assert len(v) == k and v.name == name
    assert v.groups[head] == "head"
    assert sorted(v.group_indices("head") + v.group_indices("medium") + v.group_indices("tail")) == list(range(k))


def test_ltml39_split_matches_paper():
    v = load_vocab("ltml39")
    assert (len(v.group_indices("head")), len(v.group_indices("medium")), len(v.group_indices("tail"))) == (7, 7, 25)


def test_unknown_vocab_is_clear_error():
    with pytest.raises(ValueError, match="unknown vocabulary 'nope'"):
        load_vocab("nope")


def test_user_vocab_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nclasses:\n  - {name: A, group: head}\n  - {name: B, group: tail}\n")
    v = load_vocab(str(p))
    assert v.classes == ("A", "B") and v.group_indices("tail") == [1]


def test_schema_validation_names_row():
    t = empty_findings_table()
    assert validate_findings(t).num_rows == 0
    row = {c: ["x"] for c in FINDINGS_COLUMNS}
    row.update(status=["positive"], certainty=[1.0], severity=["mild"], change=["none"], typicality=["atypical"],
               start=[0], end=[1], n_mentions=[1])
    ok = pa.table(row)
    assert validate_findings(ok).num_rows == 1
    bad = ok.set_column(ok.column_names.index("status"), "status", pa.array(["maybe"]))
    with pytest.raises(ValueError, match="row 0: status='maybe'"):
        validate_findings(bad)


def test_help_does_not_import_torch():
    code = "import sys; from repgls.cli import app; import repgls; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_command_help_has_an_example():
    from typer.testing import CliRunner

    from repgls.cli import app

    names = [c.name for c in app.registered_commands]
    assert {"mine", "rates", "prepare", "train", "eval", "predict", "bench", "demo", "phantom"} <= set(names)
    runner = CliRunner()
    for name in names:
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "Example: repgls " + name in res.output, name
