"""Typed config plumbing: dataclass <-> dict <-> YAML, with clear errors."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from gdkvm.config import from_dict, load_yaml, save_yaml, to_dict
from gdkvm.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    width: int = 4
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    lr: float = 1e-4
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    note: str | None = None


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer(name="run", lr=3e-4, sizes=(8, 16), inner=Inner(width=7, mode="b"), note="hi")
    save_yaml(tmp_path / "c.yaml", cfg)
    back = from_dict(Outer, load_yaml(tmp_path / "c.yaml"))
    assert back == cfg
    assert to_dict(back)["inner"] == {"width": 7, "mode": "b"}


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrr'\]"):
        from_dict(Outer, {"lrr": 1.0})


def test_wrong_type_and_literal():
    with pytest.raises(ConfigError, match="config.inner.width: expected an integer"):
        from_dict(Outer, {"inner": {"width": "wide"}})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(Outer, {"inner": {"mode": "c"}})


def test_int_accepted_as_float_and_none_optional():
    cfg = from_dict(Outer, {"lr": 1, "note": None})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.note is None


def test_malformed_and_missing_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "nope.yaml")


def test_yaml_is_safe(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_yaml(evil)
