"""`gdkvm ablate`: every row of a paper table is trained and evaluated, and a rerun skips finished rows."""

import math

import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.engine.ablate import TABLES, row_run_name, run_ablation, table_variants
from gdkvm.engine.config import TrainConfig
from gdkvm.errors import ConfigError


def test_tables_name_registered_variants_with_paper_numbers():
    from gdkvm.models.registry import get_variant

    assert TABLES[3] == ("lkva", "lkva-kpff", "lkva-gdr", "full")
    assert TABLES[4] == ("linear", "delta", "wo-alpha", "wo-beta", "gdr")
    for table, variants in TABLES.items():
        for variant in variants:
            spec = get_variant(variant)
            assert spec.paper_table == f"Table {table}" and spec.paper_mdice is not None
    with pytest.raises(ConfigError):
        table_variants(5)


def test_table3_rows_run_once_and_are_skipped_afterwards(prepared_store, tmp_path):
    base = TrainConfig(data=str(prepared_store), iterations=1, batch_size=1, device="cpu")
    rows = run_ablation(3, prepared_store, preset="tiny", out=tmp_path, base=base, n_boot=20)
    assert [r.variant for r in rows] == list(TABLES[3])
    assert all(r.status == "new" for r in rows)
    assert all(0.0 <= r.dice <= 1.0 and not math.isnan(r.hd95) for r in rows)
    assert [r.paper_mdice for r in rows] == [93.10, 93.30, 94.49, 95.11]
    for r in rows:
        assert r.run_dir.name == row_run_name(3, "camus", r.variant, "tiny")
        assert (r.run_dir / "eval" / "test" / "summary.json").is_file()

    # an interrupted row: its evaluation is gone, so only that row is evaluated again
    (rows[1].run_dir / "eval" / "test" / "summary.json").unlink()
    result = CliRunner().invoke(app, ["ablate", "--table", "3", "--data", str(prepared_store), "--preset", "tiny",
                                      "--iterations", "1", "--batch-size", "1", "--device", "cpu",
                                      "--out", str(tmp_path), "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert "lkva-kpff: new" in result.output and "lkva: done earlier" in result.output
    for text in ("paper mDice", "our mDice", "93.10", "95.11", "LKVA"):
        assert text in result.output, text


def _fake_run(root, name, dice_by_patient):
    """A run folder with only what summarise_ablation reads: eval/test/per_frame.csv."""
    from gdkvm.engine.evaluate import eval_dir

    run = root / name
    folder = eval_dir(run, "test", "clean")
    folder.mkdir(parents=True)
    lines = ["case_id,patient,dice"]
    for patient, values in dice_by_patient.items():
        lines += [f"{patient}_4CH,{patient},{v}" for v in values]
    (folder / "per_frame.csv").write_text("\n".join(lines) + "\n")
    return run


def test_summary_pairs_patients_and_averages_seeds(tmp_path):
    from gdkvm.engine.ablate import AblationRow, summarise_ablation

    patients = [f"patient{i:04d}" for i in range(12)]
    rows = []
    for seed in (0, 1):
        ref = {p: [0.90 + 0.005 * i, 0.92 + 0.005 * i] for i, p in enumerate(patients)}
        worse = {p: [v - 0.05 - 0.001 * seed for v in vals] for p, vals in ref.items()}
        same = {p: [v + (0.002 if i % 2 else -0.002) for v in vals] for i, (p, vals) in enumerate(ref.items())}
        for variant, table in (("gdr", ref), ("delta", worse), ("linear", same)):
            run = _fake_run(tmp_path, f"{variant}-{seed}", table)
            mean = sum(sum(v) / len(v) for v in table.values()) / len(table)
            rows.append(AblationRow(variant=variant, paper_row=variant, paper_mdice=None, run_dir=run,
                                    status="new", seed=seed, dice=mean))
    frame = summarise_ablation(rows, 4, "camus", "tiny", n_boot=500).set_index("variant")
    assert frame.loc["delta", "n_seeds"] == 2 and frame.loc["delta", "n_patients"] == 12
    assert frame.loc["delta", "diff"] == pytest.approx(-5.05, abs=1e-6)  # mean over seeds of -5.0 and -5.1
    assert frame.loc["delta", "diff_ci_high"] < 0 and bool(frame.loc["delta", "resolved"])
    assert frame.loc["linear", "diff_ci_low"] < 0 < frame.loc["linear", "diff_ci_high"]
    assert not bool(frame.loc["linear", "resolved"])
    assert math.isnan(frame.loc["gdr", "diff"])  # the reference row is not compared with itself
    assert frame.loc["gdr", "mdice_sd"] == pytest.approx(0.0, abs=1e-9)


def test_plan_names_and_bad_options_before_any_work(tmp_path, prepared_store):
    from gdkvm.engine.ablate import ablation_plan

    plan = ablation_plan(4, (0, 1), ("sqrt-pixels", "none"), baselines=True)
    assert len(plan) == 5 * 2 * 2 + 2 * 2
    assert ("stm", "sqrt-pixels", 1) in plan and ("stm", "none", 0) not in plan
    assert row_run_name(4, "camus", "gdr", "tiny") == "table4-camus-gdr-tiny"
    assert row_run_name(4, "camus", "gdr", "tiny", "none", 2) == "table4-camus-gdr-tiny-ks-none-seed2"
    for args, problem in ((["--seeds", "0,x"], "--seeds"), (["--key-scale", "huge"], "key scale 'huge'"),
                          (["--seeds", "1,1"], "distinct")):
        result = CliRunner().invoke(app, ["ablate", "--table", "4", "--data", str(prepared_store),
                                          "--out", str(tmp_path), "--device", "cpu", *args])
        assert result.exit_code != 0 and problem in str(result.exception), (args, result.exception)
    # a split outside the choices is a usage error from the option's choice set, before any work
    result = CliRunner().invoke(app, ["ablate", "--table", "4", "--data", str(prepared_store),
                                      "--out", str(tmp_path), "--device", "cpu", "--split", "tset"])
    assert result.exit_code == 2 and "tset" in result.output, result.output
    assert not any(tmp_path.iterdir())  # nothing was trained


def test_seeds_and_stabilisers_run_and_write_a_summary(prepared_store, tmp_path):
    result = CliRunner().invoke(app, ["ablate", "--table", "4", "--data", str(prepared_store), "--preset", "tiny",
                                      "--iterations", "1", "--batch-size", "1", "--device", "cpu",
                                      "--out", str(tmp_path), "--n-boot", "20", "--seeds", "0,1",
                                      "--key-scale", "sqrt-pixels,none"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "table4-camus-delta-tiny-ks-none-seed1" / "config.yaml").is_file()
    import pandas as pd
    import yaml

    cfg = yaml.safe_load((tmp_path / "table4-camus-delta-tiny-ks-none-seed1" / "config.yaml").read_text())
    train = cfg.get("train", cfg)
    assert train["seed"] == 1 and train["model_overrides"]["key_scale"] == "none"
    summary = pd.read_csv(tmp_path / "ablation-table4-camus-tiny.csv")
    assert len(summary) == 10 and set(summary["key_scale"]) == {"sqrt-pixels", "none"}
    assert (summary["n_seeds"] == 2).all()
    assert summary.loc[summary["variant"] != "gdr", "diff"].notna().all()
    assert "resolved" in result.output


def test_a_diverged_row_is_recorded_and_the_table_goes_on(prepared_store, tmp_path, monkeypatch):
    """A NaN loss in one row (what `--key-scale none` may give) is a result: NaN metrics, a divergence record
    in the run folder, no retraining on a rerun, and the other rows and the summary still come out."""
    import json

    import gdkvm.engine.ablate as ablate
    from gdkvm.engine.train import NonFiniteLossError

    real_train = ablate.train_run
    trained = []

    def train_or_diverge(cfg, out, **kwargs):
        trained.append(cfg.variant)
        if cfg.variant == "delta":
            raise NonFiniteLossError("iteration 1: loss is nan (NaN/inf); stopped before updating the weights")
        return real_train(cfg, out, **kwargs)

    monkeypatch.setattr(ablate, "train_run", train_or_diverge)
    base = TrainConfig(data=str(prepared_store), iterations=1, batch_size=1, device="cpu")
    rows = run_ablation(4, prepared_store, preset="tiny", out=tmp_path, base=base, n_boot=20)
    by_name = {r.variant: r for r in rows}
    assert by_name["delta"].diverged and by_name["delta"].status.startswith("diverged: iteration 1: loss is nan")
    assert math.isnan(by_name["delta"].dice)
    record = json.loads((by_name["delta"].run_dir / ablate.DIVERGED_FILE).read_text())
    assert record["diverged"] is True and "loss is nan" in record["reason"]
    assert not (by_name["delta"].run_dir / "eval").exists()
    assert all(not r.diverged and 0.0 <= r.dice <= 1.0 for r in rows if r.variant != "delta")

    trained.clear()
    again = run_ablation(4, prepared_store, preset="tiny", out=tmp_path, base=base, n_boot=20)
    assert trained == []  # finished rows are skipped, and the diverged one is not trained again
    assert {r.variant: r.status.split(":")[0] for r in again}["delta"] == "diverged earlier"

    frame = ablate.summarise_ablation(again, 4, "camus", "tiny", n_boot=50).set_index("variant")
    assert frame.loc["delta", "n_diverged"] == 1 and math.isnan(frame.loc["delta", "mdice"])
    assert math.isnan(frame.loc["delta", "diff"]) and not frame.loc["delta", "resolved"]
    assert (frame.drop(index="delta")["n_diverged"] == 0).all()
    assert not math.isnan(frame.loc["linear", "diff"])  # the other rows still get their CI


def test_rows_restrict_the_plan_and_always_keep_the_reference(tmp_path, prepared_store):
    from gdkvm.engine import run_files
    from gdkvm.engine.ablate import ablation_plan, select_rows

    assert select_rows(3, None, baselines=True) == TABLES[3] + ("unet", "stm")
    assert select_rows(3, ("unet",), baselines=True) == ("full", "unet")  # the reference is added
    assert select_rows(4, ("delta", "linear")) == ("linear", "delta", "gdr")  # the paper's order
    plan = ablation_plan(3, (0, 1, 2), baselines=True, rows=("unet",))
    assert plan == [("full", "sqrt-pixels", s) for s in (0, 1, 2)] + [("unet", "sqrt-pixels", s) for s in (0, 1, 2)]
    with pytest.raises(ConfigError, match="add --baselines"):
        select_rows(3, ("unet",))
    with pytest.raises(ConfigError, match="'gdr'.*valid: lkva"):
        select_rows(3, ("gdr",))
    assert run_files.ablation_summary_name(3, "camus", "tiny", ("full", "unet")) == \
        "ablation-table3-camus-tiny-rows-full-unet.csv"
    result = CliRunner().invoke(app, ["ablate", "--table", "4", "--data", str(prepared_store), "--out", str(tmp_path),
                                      "--device", "cpu", "--rows", "wo-gamma"])
    assert result.exit_code != 0 and "wo-gamma" in str(result.exception)
    assert not any(tmp_path.iterdir())  # nothing was trained


def test_rows_run_only_those_and_write_their_own_summary(prepared_store, tmp_path):
    import pandas as pd

    result = CliRunner().invoke(app, ["ablate", "--table", "4", "--data", str(prepared_store), "--preset", "tiny",
                                      "--iterations", "1", "--batch-size", "1", "--device", "cpu",
                                      "--out", str(tmp_path), "--n-boot", "20", "--rows", "linear"])
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["table4-camus-gdr-tiny", "table4-camus-linear-tiny"]
    summary = pd.read_csv(tmp_path / "ablation-table4-camus-tiny-rows-linear-gdr.csv")
    assert list(summary["variant"]) == ["linear", "gdr"] and pd.notna(summary.loc[0, "diff"])
    assert not (tmp_path / "ablation-table4-camus-tiny.csv").exists()
