"""Running notebooks with a parameter file: each notebook gets the parameters it declares; a missing
notebook or a parameter that no notebook declares stops the run before anything executes."""
from __future__ import annotations

import ast
import json

import nbformat
import pytest
import yaml

from utils.paths import project_path
from utils.run_notebooks import chain_notebooks, check_parameters, declared_parameters, load_params, main


def _notebook(path, params: str) -> str:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print('ran')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return str(path)


def _params(path, values: dict) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _injected(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    cells = [c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0]


def test_load_params(tmp_path) -> None:
    assert load_params(_params(tmp_path / "p.yaml", {"epochs": 2})) == {"epochs": 2}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_params(tmp_path / "list.yaml")


def test_declared_parameters_and_unknown_keys(tmp_path) -> None:
    a = _notebook(tmp_path / "01_a.ipynb", "epochs = 1\nmodels = ['rnn']")
    declared = declared_parameters([a])
    assert list(declared.values()) == [{"epochs", "models"}]
    check_parameters({"epochs": 3}, declared)
    with pytest.raises(ValueError, match="Parameter\\(s\\) epoch are declared by none"):
        check_parameters({"epoch": 3}, declared)
    with pytest.raises(FileNotFoundError, match="02_missing.ipynb"):
        declared_parameters([a, tmp_path / "02_missing.ipynb"])


def test_each_notebook_gets_only_its_parameters(tmp_path) -> None:
    a = _notebook(tmp_path / "01_a.ipynb", "epochs = 1\nshared = 'x'")
    b = _notebook(tmp_path / "02_b.ipynb", "beam_size = 1\nshared = 'x'")
    params = _params(tmp_path / "p.yaml", {"epochs": 4, "beam_size": 3, "shared": "y"})
    out = tmp_path / "out"
    assert main([a, b, "--params", params, "--out", str(out), "--prepare-only"]) == 0
    first, second = _injected(out / "01_a.ipynb"), _injected(out / "02_b.ipynb")
    assert "epochs = 4" in first and 'shared = "y"' in first and "beam_size" not in first
    assert "beam_size = 3" in second and 'shared = "y"' in second and "epochs" not in second


def test_bad_runs_stop_before_executing(tmp_path, capsys) -> None:
    a = _notebook(tmp_path / "01_a.ipynb", "epochs = 1")
    out = tmp_path / "out"
    assert main([a, "--params", _params(tmp_path / "typo.yaml", {"epoch": 2}), "--out", str(out)]) == 2
    assert "epoch are declared by none" in capsys.readouterr().err
    good = _params(tmp_path / "p.yaml", {"epochs": 2})
    assert main([a, str(tmp_path / "nope.ipynb"), "--params", good, "--out", str(out)]) == 2
    assert "nope.ipynb" in capsys.readouterr().err
    assert main([a, "--params", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2
    assert not out.exists()  # nothing ran, nothing was written


def test_part_of_the_chain_runs_with_the_chain_parameter_file(tmp_path, capsys) -> None:
    """params/full.yaml names training sizes that 03 does not declare: not a typo when 03 runs alone."""
    out = tmp_path / "out"
    assert main(["notebooks/03_bleu.ipynb", "--params", "params/full.yaml", "--out", str(out), "--prepare-only"]) == 0
    injected = _injected(out / "03_bleu.ipynb")
    assert "beam_size = 5" in injected and "train_size" not in injected and "epochs" not in injected
    typo = _params(tmp_path / "typo.yaml", {"beam_sise": 3})
    assert main(["notebooks/03_bleu.ipynb", "--params", typo, "--out", str(out), "--prepare-only"]) == 2
    assert "beam_sise are declared by none" in capsys.readouterr().err


def test_set_overrides_one_parameter_of_the_file(tmp_path, capsys) -> None:
    """``--set`` replaces a value of the file (read as YAML); a typo in its name is caught like one in
    the file, and a pair without ``=`` stops the run with the form it needs."""
    a = _notebook(tmp_path / "01_a.ipynb", "epochs = 1\ndata_dir = 'x'")
    params = _params(tmp_path / "p.yaml", {"epochs": 4, "data_dir": "runs/word/data"})
    out = tmp_path / "out"
    assert main([a, "--params", params, "--set", "data_dir=data/processed", "--set", "epochs=2",
                 "--out", str(out), "--prepare-only"]) == 0
    injected = _injected(out / "01_a.ipynb")
    assert 'data_dir = "data/processed"' in injected and "epochs = 2" in injected
    assert main([a, "--params", params, "--set", "epoch=2", "--out", str(out), "--prepare-only"]) == 2
    assert "epoch are declared by none" in capsys.readouterr().err
    assert main([a, "--params", params, "--set", "epochs", "--out", str(out), "--prepare-only"]) == 2
    assert "must read NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("params", sorted(project_path("params").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(project_path("params"))))
def test_every_parameter_file_is_declared_by_the_chain(params, tmp_path) -> None:
    """Every key of every parameter set (the study's recipe settings included) is a notebook parameter."""
    assert main([*map(str, chain_notebooks()), "--params", str(params), "--out", str(tmp_path), "--prepare-only"]) == 0


@pytest.mark.parametrize("path", chain_notebooks(), ids=lambda p: p.name)
def test_stored_notebooks_are_clean(path) -> None:
    """Stored without outputs, every cell with its own id, one `parameters` cell of plain literals."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    ids = [c.get("id") for c in cells]
    assert None not in ids and len(set(ids)) == len(ids)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for stmt in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        ast.literal_eval(stmt.value)  # a plain literal: papermill can replace it


@pytest.mark.parametrize("path", chain_notebooks(), ids=lambda p: p.name)
def test_parameters_cells_hold_the_full_runs_values(path) -> None:
    """Run by hand, a notebook does what ``make main`` does: every parameter that params/full.yaml
    sets has that value in the notebook's parameters cell."""
    full = load_params("params/full.yaml")
    cell = next(c for c in json.loads(path.read_text())["cells"]
                if "parameters" in c.get("metadata", {}).get("tags", []))
    values = {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse("".join(cell["source"])).body}
    differ = {k: (v, full[k]) for k, v in values.items() if k in full and full[k] != v}
    assert not differ, f"notebook value vs params/full.yaml: {differ}"


def test_the_runner_fixes_string_hashing_for_its_kernels(tmp_path, monkeypatch) -> None:
    """CodeBLEU depends on Python's hash seed: the kernels the runner starts inherit a fixed one."""
    import os

    from utils.run_notebooks import HASH_SEED

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    assert main(["notebooks/03_bleu.ipynb", "--params", "params/smoke.yaml", "--out", str(tmp_path),
                 "--prepare-only"]) == 0
    assert os.environ["PYTHONHASHSEED"] == HASH_SEED


@pytest.mark.parametrize("bad, message", [({"epochs": 0}, "epochs must be a whole number of at least 1, got 0"),
                                          ({"lr_schedule": "cosine"}, "Unknown lr_schedule 'cosine'"),
                                          ({"models": ["rnn", "gpt"]}, "Unknown or missing model name")])
def test_an_invalid_value_stops_the_run_naming_the_parameter(bad, message, tmp_path, capsys) -> None:
    """``epochs: 0`` once ended in a misleading "No best checkpoint" after preprocessing; now nothing runs."""
    params = _params(tmp_path / "p.yaml", {**load_params("params/smoke.yaml"), **bad})
    out = tmp_path / "out"
    assert main([*map(str, chain_notebooks()), "--params", params, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "p.yaml" in err
    assert not out.exists()
