"""The TPU notebook's install cell: with jaxmotif missing and no REPO given it stops with a plain message."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab_tpu_quickstart.ipynb"


def _install_cell() -> str:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def test_empty_repo_stops_with_a_message(monkeypatch):
    import importlib.util

    source = _install_cell()
    assert 'REPO = ""' in source  # the line a Colab user edits
    monkeypatch.delenv("JAXMOTIF_REPO", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jaxmotif" else real(name, *a)
    )
    calls = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    with pytest.raises(SystemExit, match="set REPO"):
        exec(compile(source, "install-cell", "exec"), {})
    assert calls == []  # nothing installed, nothing cloned


def test_installed_package_installs_nothing(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    exec(compile(_install_cell(), "install-cell", "exec"), {})
    assert calls == [] and "jaxmotif from" in capsys.readouterr().out
