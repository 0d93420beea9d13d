"""Option names shared across commands: one spelling per option, old spellings hidden but still accepted."""

from typing import Literal, get_args, get_origin

import pytest
from typer.testing import CliRunner

from gdkvm.cli.common import CHOICES, COMMAND_CHOICES, renamed_option
from gdkvm.cli.main import app
from gdkvm.data.augment import AugmentProfile
from gdkvm.data.camus import LabelSet
from gdkvm.data.echonet import ClipForm, GrayMode, TracingRows
from gdkvm.data.prepare_camus import CamusSplit
from gdkvm.data.prepare_echonet import Protocol
from gdkvm.data.sampling import SamplingRule
from gdkvm.data.store import Split
from gdkvm.engine.config import Supervision
from gdkvm.engine.evaluate import CheckpointChoice
from gdkvm.errors import ConfigError
from gdkvm.metrics.segmentation import Mode
from gdkvm.models.config import PresetName
from gdkvm.models.export import EXPORT_FORMATS

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


def _commands(command, path=()):
    """(command path, command) for every leaf command of the CLI."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield " ".join(path), command
        return
    for name, sub in sorted(subcommands.items()):
        yield from _commands(sub, (*path, name))


def _choice_options():
    import typer

    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            annotation = getattr(descriptor, "annotation", None)
            if get_origin(annotation) is Literal:
                yield path, param.opts[0], annotation


def test_every_choice_option_takes_its_values_from_the_library_alias():
    found = {(path, option): annotation for path, option, annotation in _choice_options()}
    for (path, option), annotation in found.items():
        alias = COMMAND_CHOICES.get((path, option), CHOICES.get(option))
        assert alias is not None, f"{path} {option}: a choice set that is not one of the library's aliases"
        assert get_args(annotation) == get_args(alias), (path, option)
    # the sets named in the issue are all choice options now (not free strings checked later, or re-spelled)
    expected = {
        ("prepare camus", "--labels"): LabelSet, ("prepare camus", "--split"): CamusSplit,
        ("prepare camus", "--sampling"): SamplingRule, ("prepare camus", "--protocol"): Protocol,
        ("prepare echonet", "--clip"): ClipForm, ("prepare echonet", "--gray"): GrayMode,
        ("prepare echonet", "--tracing-rows"): TracingRows, ("prepare echonet", "--protocol"): Protocol,
        ("prepare folder", "--sampling"): SamplingRule,
        ("evaluate", "--mode"): Mode, ("evaluate", "--split"): Split, ("evaluate", "--checkpoint"): CheckpointChoice,
        ("export", "--format"): EXPORT_FORMATS, ("export", "--checkpoint"): CheckpointChoice,
        ("train", "--supervision"): Supervision, ("train", "--preset"): PresetName,
        ("train", "--augment-profile"): AugmentProfile,
        ("ablate", "--preset"): PresetName, ("ablate", "--split"): Split,
        ("bench fps", "--preset"): PresetName, ("bench scaling", "--preset"): PresetName,
    }
    for key, alias in expected.items():
        assert key in found, f"{key}: not a choice option"
        values = alias if isinstance(alias, tuple) else get_args(alias)
        assert get_args(found[key]) == values, key


def test_no_command_module_spells_a_choice_set_as_an_enum():
    import pathlib

    import gdkvm.cli

    for module in pathlib.Path(gdkvm.cli.__file__).parent.glob("*.py"):
        assert "(str, Enum)" not in module.read_text(encoding="utf-8"), module.name


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        (["ablate", "--table", "4", "--data", "nowhere", "--split", "tset"], "'tset' is not one of 'train', 'val', 'test'"),
        (["evaluate", "--run", "nowhere", "--mode", "strict"], "'strict' is not one of 'clean', 'memsam', 'gdkvm-legacy'"),
        (["train", "--data", "nowhere", "--preset", "huge"], "'huge' is not one of 'paper', 'tiny', 'small'"),
    ],
)
def test_a_value_outside_the_set_is_a_usage_error_before_any_work(args, bad):
    result = runner.invoke(app, args, terminal_width=300)
    assert result.exit_code == 2
    assert bad in " ".join(result.output.replace("│", " ").split())
