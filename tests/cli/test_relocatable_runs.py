"""Runs record their store (absolute path + id) and are evaluated / reported after being moved, from another folder."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.config import load_yaml
from gdkvm.data.locate import data_id, locate_store
from gdkvm.errors import GdkvmError

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("module_one_thread")


@pytest.fixture(scope="module")
def trained(prepared_store, tmp_path_factory):
    """A 2-iteration run trained from folder A with a relative --data, then A/results moved to B."""
    base = tmp_path_factory.mktemp("relocate")
    a = base / "A"
    shutil.copytree(prepared_store, a / "results" / "prepared" / "camus")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        result = runner.invoke(app, ["train", "--preset", "tiny", "--iterations", "2", "--batch-size", "2",
                                     "--data", "results/prepared/camus", "--device", "cpu",
                                     "--out", "results/runs", "--name", "moved"])
    assert result.exit_code == 0, result.output
    cfg = load_yaml(a / "results" / "runs" / "moved" / "config.yaml")
    store = (a / "results" / "prepared" / "camus").resolve()
    assert cfg["train"]["data"] == str(store)  # absolute, resolved
    meta = json.loads((store / "store.json").read_text())
    assert cfg["store"]["data_id"] == data_id(meta) and cfg["store"]["path"] == str(store)
    assert cfg["store"]["dataset"] == "camus" and cfg["store"]["phantom"] is True
    assert cfg["store"]["relative_to_run"] == "../../prepared/camus"
    shutil.move(a / "results", base / "B" / "results")
    shutil.rmtree(a)
    return base


def test_moved_run_is_evaluated_and_reported_from_another_folder(trained, monkeypatch):
    run = trained / "B" / "results" / "runs" / "moved"
    elsewhere = trained / "C"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--device", "cpu", "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    store = (trained / "B" / "results" / "prepared" / "camus").resolve()
    assert f"store: {store} (recorded path relative to the run folder)" in result.output
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert summary["store"] == str(store)

    result = runner.invoke(app, ["report", "--runs", str(run.parent), "--out", str(elsewhere / "report"),
                                 "--bench", str(elsewhere / "no-bench")])
    assert result.exit_code == 0, result.output
    assert f"moved: store: {store}" in result.output
    assert "paper numbers folder not found" not in result.output  # shipped with the package
    runs_table = (elsewhere / "report" / "tables" / "runs.csv").read_text()
    assert "synthetic phantom (CAMUS format)" in runs_table and "provenance unknown" not in runs_table
    assert list((elsewhere / "report" / "figures").glob("fig7_overlays_moved*.png"))


def test_store_moved_alone_is_found_by_id_under_data(trained, monkeypatch, tmp_path):
    run = trained / "B" / "results" / "runs" / "moved"
    config = load_yaml(run / "config.yaml")
    store = trained / "B" / "results" / "prepared" / "camus"
    hidden = tmp_path / "elsewhere" / "deep" / "renamed"
    shutil.copytree(store, hidden)
    shutil.move(store, trained / "B" / "stash")
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(GdkvmError) as info:
            locate_store(run, config)
        message = str(info.value)
        assert "prepared store not found" in message and "\n" not in message
        assert str(store) in message and "--data" in message
        found = locate_store(run, config, search=tmp_path / "elsewhere")
        assert found.path == hidden.resolve() and "data_id" in found.how

        result = runner.invoke(app, ["report", "--runs", str(run.parent), "--out", str(tmp_path / "report"),
                                     "--bench", str(tmp_path / "no-bench")])
        assert result.exit_code == 0, result.output
        runs_table = (tmp_path / "report" / "tables" / "runs.csv").read_text()
        assert "synthetic phantom (CAMUS format)" in runs_table  # recorded at train time
    finally:
        shutil.move(trained / "B" / "stash", store)


def test_a_store_with_another_id_is_skipped(trained, tmp_path):
    run = trained / "B" / "results" / "runs" / "moved"
    config = load_yaml(run / "config.yaml")
    config["store"]["data_id"] = "0" * 64
    with pytest.raises(GdkvmError, match="data_id differs"):
        locate_store(run, config)
