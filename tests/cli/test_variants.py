"""``gdkvm variants``: the table of variants with paper rows and parameter counts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.cli.variants import _format_params
from gdkvm.errors import ConfigError
from gdkvm.models.registry import count_model_parameters, list_variants

runner = CliRunner()


@pytest.mark.parametrize("args,preset", [([], "tiny"), (["--preset", "paper"], "paper")], ids=["default", "paper"])
def test_variants_table(args, preset):
    result = runner.invoke(app, ["variants", *args])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"preset: {preset}" in out
    for name in list_variants():
        assert name in out
        assert _format_params(count_model_parameters(name, preset)) in out
    assert "Table 3" in out and "Table 4" in out
    assert "95.11" in out and "74.68" in out


def test_paper_preset_counts_are_around_35m():
    result = runner.invoke(app, ["variants", "--preset", "paper"])
    full = count_model_parameters("full", "paper")
    assert _format_params(full) in result.output
    assert abs(full - 35.2e6) <= 0.05 * 35.2e6  # the paper's 35.2M, within 5%


def test_unknown_preset_is_an_error():
    result = runner.invoke(app, ["variants", "--preset", "huge"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "valid: paper, small, tiny" in str(result.exception)
