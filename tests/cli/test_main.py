"""Root CLI: help, version, doctor, and the one-line error boundary."""

import subprocess
import sys

from typer.testing import CliRunner

from gdkvm import __version__
from gdkvm.cli.main import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_doctor_reports_versions(tmp_path):
    import torch

    result = runner.invoke(app, ["doctor", "--data", str(tmp_path), "--no-check-triton"])
    assert result.exit_code == 0, result.output
    assert torch.__version__ in result.output
    assert "prepared camus" in result.output


def test_doctor_triton_interpreter_probe():
    from gdkvm.doctor import _triton_interpreter_works

    ok, msg = _triton_interpreter_works()
    assert ok, msg


def test_domain_error_is_one_line_and_exit_1():
    code = (
        "import sys; sys.argv=['gdkvm','boom']\n"
        "import gdkvm.cli.main as m\n"
        "from gdkvm.errors import DataError\n"
        "def boom(): raise DataError('x/y.nii.gz', 'truncated gzip stream')\n"
        "m.app.command(name='boom')(boom)\n"
        "m.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0] == "error: x/y.nii.gz: truncated gzip stream"
    assert "Traceback" not in proc.stderr


def test_unknown_command_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "gdkvm.cli.main", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 2


def test_python_dash_m_gdkvm_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "gdkvm", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gdkvm", "bench", "fps", "--batch-sizes", "x"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_no_option_help_text_is_eaten_as_rich_markup():
    """With rich markup on, an unescaped "[default: 10]" in a help string renders as nothing."""
    import re

    import typer.main

    styles = {"bold", "cyan", "green", "red", "yellow", "dim", "italic", "magenta", "blue", "white"}
    root = typer.main.get_command(app)

    def commands(cmd, path=()):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, (*path, name))

    bad = []
    seen = 0
    for path, cmd in commands(root):
        seen += 1
        for param in cmd.params:
            for tag in re.findall(r"(?<!\\)\[([^\]]*)\]", getattr(param, "help", None) or ""):
                if tag.lstrip("/").split(" ")[0] not in styles and tag != "/":
                    bad.append((" ".join(path), param.name, tag))
    assert seen >= 12  # the root, its commands and the prepare/bench sub-commands
    assert not bad, bad


def test_debug_flag_works_after_the_command():
    from gdkvm.cli.main import hoist_debug_flag

    assert hoist_debug_flag(["gdkvm", "bench", "fps", "--debug"]) == ["gdkvm", "--debug", "bench", "fps"]
    assert hoist_debug_flag(["gdkvm", "train", "--", "--debug"]) == ["gdkvm", "train", "--", "--debug"]
    assert hoist_debug_flag(["gdkvm", "variants"]) == ["gdkvm", "variants"]
    proc = subprocess.run([sys.executable, "-m", "gdkvm", "bench", "fps", "--batch-sizes", "x", "--debug"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
