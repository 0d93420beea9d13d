"""Option names shared across commands: one spelling per option, old spellings hidden but still accepted."""

import pytest
from typer.testing import CliRunner

from gdkvm.cli.common import renamed_option
from gdkvm.cli.main import app
from gdkvm.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize(
    ("command", "new"),
    [
        (["evaluate"], "--batch-size"),
        (["export"], "--batch-size"),
        (["bench", "scaling"], "--batch-size"),
        (["bench", "fps"], "--batch-sizes"),
        (["train"], "--batch-size"),
        (["ablate"], "--batch-size"),
    ],
)
def test_batch_option_has_one_visible_name(command, new):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    words = result.output.replace("│", " ").split()
    assert new in words and "--batch" not in words


def test_renamed_option_takes_the_old_spelling_with_a_warning(capsys):
    assert renamed_option("--batch-size", 8, 8, "--batch", None) == 8
    assert renamed_option("--batch-size", 4, 8, "--batch", None) == 4
    assert renamed_option("--batch-size", 8, 8, "--batch", 2) == 2
    assert "warning: --batch is deprecated; use --batch-size" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(ConfigError, match="--batch is the old spelling of --batch-size; give --batch-size only"):
        renamed_option("--batch-size", 4, 8, "--batch", 2)
