"""`gdkvm train` / `gdkvm evaluate` / `gdkvm ablate` through the Typer app on a tiny phantom store."""

import json

import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, GdkvmError

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("module_one_thread")



def test_train_then_evaluate_prints_the_metrics_table(prepared_store, tmp_path):
    result = runner.invoke(app, ["train", "--variant", "wo-alpha", "--preset", "tiny", "--iterations", "20",
                                 "--data", str(prepared_store), "--batch-size", "2", "--device", "cpu",
                                 "--val-every", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "camus-wo-alpha-tiny"
    assert json.loads((run / "train_done.json").read_text())["iteration"] == 20
    assert "best val Dice" in result.output and "camus-wo-alpha-tiny" in result.output

    result = runner.invoke(app, ["evaluate", "--run", str(run), "--device", "cpu", "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    for text in ("Dice x100", "IoU x100", "HD95 (mm)", "ASD (mm)", "overall", "ED", "ES", "ejection fraction",
                 "biplane-simpson", "area-length", "reference masks", "dataset EF", "method bias"):
        assert text in result.output, text
    for old in (" biplane ", "area-len ", "1-plane", "ref~dataset"):  # the terminal uses the report's names
        assert old not in result.output, old
    assert (run / "eval" / "test" / "summary.json").is_file()


def test_resume_keeps_the_options_the_run_started_with(prepared_store, tmp_path):
    common = ["train", "--data", str(prepared_store), "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path),
              "--name", "r"]
    first = runner.invoke(app, [*common, "--iterations", "2", "--batch-size", "2", "--lr", "0.001"])
    assert first.exit_code == 0, first.output
    # no --batch-size / --lr: the saved 2 / 0.001 are kept (the defaults 10 / 1e-4 would be refused)
    second = runner.invoke(app, [*common, "--resume", "--iterations", "3"])
    assert second.exit_code == 0, second.output
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    refused = runner.invoke(app, [*common, "--resume", "--seed", "9"])
    assert isinstance(refused.exception, ConfigError) and "seed" in str(refused.exception)


def test_train_errors_are_domain_errors(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "none" / "camus"), "--preset", "tiny",
                                 "--device", "cpu", "--out", str(tmp_path)])
    assert isinstance(result.exception, GdkvmError)
    result = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "missing-run"), "--device", "cpu"])
    assert isinstance(result.exception, GdkvmError) and "run folder not found" in str(result.exception)
    result = runner.invoke(app, ["train", "--data", "x/camus", "--model-set", "freeze_bn"])
    assert isinstance(result.exception, ConfigError) and "KEY=VALUE" in str(result.exception)


def test_nproc_relaunches_through_torchrun(monkeypatch, tmp_path):
    import gdkvm.engine.distributed as dist_mod

    seen = {}

    def fake_launch(nproc, module_args, env=None):
        seen["nproc"], seen["args"] = nproc, list(module_args)

    monkeypatch.setattr(dist_mod, "launch_torchrun", fake_launch)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("GDKVM_DEBUG", "0")  # `--debug` below sets it to 1; monkeypatch restores it after
    user = ["train", "--data", "d/camus", "--preset", "tiny", "--device", "cpu", "--batch-size", "4",
            "--out", str(tmp_path), "--model-set", "freeze_bn=true", "--no-augment", "--augment-profile", "robust",
            "--backbone-weights", "key=k.pth", "--supervision", "full", "--resume"]
    # the workers get the user's command line as given, minus the launcher flag (in either spelling)
    for launcher in (["--nproc", "2"], ["--nproc=2"]):
        result = runner.invoke(app, [*user[:3], *launcher, *user[3:]])
        assert result.exit_code == 0, result.output
        assert seen["nproc"] == 2 and seen["args"] == ["gdkvm.cli.main", *user]
    result = runner.invoke(app, ["--debug", *user, "--nproc", "3"])
    assert result.exit_code == 0, result.output
    assert seen["nproc"] == 3 and seen["args"] == ["gdkvm.cli.main", "--debug", *user]


def test_without_option_drops_only_the_launcher_flag():
    from gdkvm.engine.distributed import without_option

    argv = ["train", "--nproc", "2", "--name", "x", "--nproc=4", "--", "--nproc", "5"]
    assert without_option(argv, "--nproc") == ["train", "--name", "x", "--", "--nproc", "5"]
    assert without_option(["train", "--nprocs", "2"], "--nproc") == ["train", "--nprocs", "2"]


def test_parse_model_set():
    from gdkvm.cli.train import parse_model_set

    assert parse_model_set(["freeze_bn=true", "decay_form=official", "key_dim=8"]) == {
        "freeze_bn": True, "decay_form": "official", "key_dim": 8}
    with pytest.raises(ConfigError):
        parse_model_set(["=3"])


def test_resume_merges_the_given_options_over_the_saved_config_in_one_place(tmp_path):
    from gdkvm.config import save_yaml
    from gdkvm.engine.config import TrainConfig
    from gdkvm.engine.train import effective_train_config, resume_config

    saved = TrainConfig(data="old/camus", preset="tiny", iterations=300, seed=3, lr=1e-3, name="run")
    save_yaml(tmp_path / "run" / "config.yaml", {"train": saved.to_dict()})
    identity = TrainConfig(data="new/camus", preset="tiny", name="run")
    given = {"iterations": None, "seed": None, "lr": None, "workers": 2}
    # options not given keep the saved values (not the recipe's defaults); the free ones given are taken
    cfg = effective_train_config(identity, given, tmp_path, resume=True)
    assert (cfg.iterations, cfg.seed, cfg.lr, cfg.workers, cfg.data) == (300, 3, 1e-3, 2, "new/camus")
    # a fresh run puts them over the defaults
    fresh = effective_train_config(identity, given, tmp_path / "elsewhere", resume=True)
    assert (fresh.iterations, fresh.seed, fresh.workers) == (TrainConfig(data="x").iterations, 0, 2)
    # the same function checks a resumption: a changed seed would break the run
    with pytest.raises(ConfigError, match="cannot resume with seed=4; the run was started with seed=3"):
        resume_config(saved, {"seed": 4}, tmp_path / "run" / "config.yaml")
    assert resume_config(saved, {"seed": 4}, tmp_path, check=False).seed == 4
    assert resume_config(saved, {"seed": 3, "iterations": 600}, tmp_path).iterations == 600
