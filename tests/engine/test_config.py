"""TrainConfig: paper defaults, validation, YAML round trip, and what may change on resume."""

from pathlib import Path

import pytest

from gdkvm.config import save_yaml
from gdkvm.engine.config import TrainConfig, load_train_config
from gdkvm.engine.train import lr_at, resolve_resume_config
from gdkvm.errors import ConfigError


def test_paper_recipe_defaults():
    cfg = TrainConfig(data="data/prepared/camus")
    assert (cfg.lr, cfg.batch_size, cfg.iterations, cfg.grad_clip) == (1e-4, 10, 1500, 3.0)
    assert (cfg.ce_weight, cfg.dice_weight, cfg.supervision, cfg.augment) == (1.0, 1.0, "ends", True)
    assert cfg.run_name == "camus-full-paper"
    assert TrainConfig(data="x/echonet", variant="wo-alpha", preset="tiny").run_name == "echonet-wo-alpha-tiny"
    assert TrainConfig(data="x/camus", name="mine").run_name == "mine"


@pytest.mark.parametrize(
    "field, value",
    [("iterations", 0), ("batch_size", 0), ("lr", 0.0), ("grad_clip", -1.0), ("supervision", "some"),
     ("device", "tpu"), ("schedule", "step"), ("workers", -1)],
)
def test_bad_values_are_config_errors(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(data="d", **{field: value}).validate()
    assert field in str(info.value) or str(value) in str(info.value)


def test_yaml_round_trip_and_train_section(tmp_path):
    cfg = TrainConfig(data="d/camus", variant="delta", iterations=7, model_overrides={"freeze_bn": True})
    save_yaml(tmp_path / "config.yaml", {"train": cfg.to_dict(), "model": {"x": 1}})
    assert load_train_config(tmp_path / "config.yaml") == cfg


def test_unknown_key_in_config_file(tmp_path):
    save_yaml(tmp_path / "config.yaml", {"train": {"data": "d", "learning_rate": 1.0}})
    with pytest.raises(ConfigError) as info:
        load_train_config(tmp_path / "config.yaml")
    assert "learning_rate" in str(info.value)


def test_resume_may_change_only_free_fields():
    saved = TrainConfig(data="d/camus", iterations=10, seed=1)
    ok = resolve_resume_config(saved, TrainConfig(data="d/camus", iterations=20, seed=1, workers=2), Path("c"))
    assert (ok.iterations, ok.workers, ok.seed) == (20, 2, 1)
    with pytest.raises(ConfigError) as info:
        resolve_resume_config(saved, TrainConfig(data="d/camus", iterations=10, seed=2), Path("c"))
    assert "seed" in str(info.value) and "\n" not in str(info.value)


def test_lr_schedule():
    cfg = TrainConfig(data="d", lr=1.0, iterations=10, warmup=2)
    assert [lr_at(cfg, i) for i in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    cos = TrainConfig(data="d", lr=1.0, iterations=10, schedule="cosine")
    assert lr_at(cos, 0) == pytest.approx(1.0)
    assert lr_at(cos, 5) == pytest.approx(0.5)
    assert lr_at(cos, 10) == pytest.approx(0.0, abs=1e-12)
