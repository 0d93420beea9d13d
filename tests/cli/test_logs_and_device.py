"""Issue 14 (everyday use): progress lines in logs, wide tables off a terminal, the device/precision/threads
line and the paper-preset warning of the long commands, and a few small CLI items."""

import io
import json
import re

import pytest
import torch
from rich.table import Table
from typer.testing import CliRunner

from gdkvm.cli import common
from gdkvm.cli.common import PlainProgress, start_long_command
from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.utils.device import apply_cpu_threads, default_cpu_threads

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("module_one_thread")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# ---------------------------------------------------------------------------------------- plain progress


def test_plain_progress_is_rate_limited_by_time():
    clock, lines = FakeClock(), []
    task = PlainProgress("prepare", None, every_s=30, clock=clock, write=lines.append)
    for done in range(1, 101):  # one step a second, no total: a line at the first step, then every 30 s
        clock.now = float(done)
        task.update(done)
    task.finish()
    counts = [int(line.split()[1]) for line in lines]
    assert counts == [1, 31, 61, 91, 100]  # 100: the final state, printed by finish()
    assert all(line.startswith("prepare ") and "elapsed" in line for line in lines)


def test_plain_progress_prints_every_ten_percent_with_eta():
    clock, lines = FakeClock(), []
    task = PlainProgress("train", 200, every_s=1e9, clock=clock, write=lines.append)
    task.update(0, 200, info="")
    for done in range(1, 201):
        clock.now = 0.5 * done
        task.update(done, 200, info=f"loss {1 / done:.4f}  4.0 clips/s")
    task.finish()
    assert [line.split()[1] for line in lines] == ["1/200"] + [f"{20 * k}/200" for k in range(1, 11)]
    assert "(10%)" in lines[1] and "loss 0.0500" in lines[1] and "eta 1:30" in lines[1]
    assert "(100%)" in lines[-1] and "eta" not in lines[-1]
    assert len(lines) == 11  # finish() does not repeat the last line


def test_plain_progress_log_every_from_the_environment(monkeypatch):
    monkeypatch.setenv(common.LOG_EVERY_ENV, "5")
    assert PlainProgress("x").every_s == 5
    monkeypatch.setenv(common.LOG_EVERY_ENV, "soon")
    assert PlainProgress("x").every_s == common.DEFAULT_LOG_EVERY_S


def test_progress_callback_off_a_terminal_writes_plain_lines(capsys):
    with common.progress_callback("evaluate test", total=4) as update:
        for done in range(1, 5):
            update(done, 4)
    out = capsys.readouterr().out
    assert "evaluate test 1/4 (25%)" in out and "evaluate test 4/4 (100%)" in out
    assert "\x1b[" not in out  # no bar, no cursor movement


def test_tables_are_not_cut_at_80_columns_off_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()
    console = common._Console(file=buffer, highlight=False)
    assert not console.is_terminal and console.width >= common.LOG_WIDTH
    table = Table()
    for k in range(8):
        table.add_column(f"column number {k}", no_wrap=True)
    table.add_row(*(f"value-{k}-{'x' * 10}" for k in range(8)))
    console.print(table)
    assert "column number 7" in buffer.getvalue() and "value-7-xxxxxxxxxx" in buffer.getvalue()
    monkeypatch.setenv("COLUMNS", "100")
    assert console.width == 100  # an explicit COLUMNS still wins


# ---------------------------------------------------------------------------------------- device and threads


def test_default_cpu_threads_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    assert apply_cpu_threads(None, "cpu") == default_cpu_threads() == max(1, min(4, __import__("os").cpu_count()))
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert apply_cpu_threads(None, "cpu") == 1  # the user's choice stays
    assert apply_cpu_threads(2, "cpu") == 2  # --threads wins
    with pytest.raises(ConfigError, match="--threads"):
        apply_cpu_threads(0, "cpu")


def test_start_line_and_paper_warning(capsys):
    dev = start_long_command("cpu", "fp32", 1, preset="paper")
    out = capsys.readouterr().out
    assert dev == torch.device("cpu")
    assert "device: cpu (fp32), torch threads: 1" in out
    assert "sized for a GPU" in out and "--preset tiny or --preset small" in out
    start_long_command("cpu", "fp32", 1, preset="tiny")
    assert "warning" not in capsys.readouterr().out
    start_long_command("cpu", "fp32", 1, preset="paper", quiet=True)
    assert capsys.readouterr().out == ""


def test_train_paper_preset_on_cpu_warns_and_keeps_the_default(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "none" / "camus"), "--device", "cpu",
                                 "--out", str(tmp_path), "--threads", "1"])
    assert isinstance(result.exception, GdkvmError)  # no store: fails, but after the two lines
    assert "training full (paper)" in result.output  # the default preset is unchanged
    assert "device: cpu (fp32), torch threads: 1" in result.output
    assert "sized for a GPU" in result.output and "--preset tiny" in result.output


def test_bench_fps_paper_preset_on_cpu_warns(monkeypatch):
    import gdkvm.bench.fps as fps_mod

    def stop(cfg, progress=None):
        raise GdkvmError("stopped by the test")

    monkeypatch.setattr(fps_mod, "run_fps", stop)
    result = runner.invoke(app, ["bench", "fps", "--device", "cpu", "--threads", "1"])
    assert "device: cpu (fp32, bf16), torch threads: 1" in result.output
    assert "sized for a GPU" in result.output and "--preset tiny" in result.output
    result = runner.invoke(app, ["bench", "fps", "--device", "cpu", "--preset", "tiny", "--threads", "1"])
    assert "device: cpu" in result.output and "sized for a GPU" not in result.output


# ---------------------------------------------------------------------------------------- a tiny run in a log


def test_train_in_a_log_prints_plain_progress_lines(prepared_store, tmp_path):
    result = runner.invoke(app, ["train", "--preset", "tiny", "--iterations", "3", "--batch-size", "2",
                                 "--data", str(prepared_store), "--device", "cpu", "--out", str(tmp_path),
                                 "--name", "log", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "device: cpu (fp32), torch threads: 1" in result.output
    assert "sized for a GPU" not in result.output
    lines = [x for x in result.output.splitlines() if re.match(r"train \d+/3 \(\d+%\)  loss \d+\.\d{4}", x)]
    assert lines and lines[0].startswith("train 1/3 (33%)") and "clips/s" in lines[0], result.output
    assert lines[-1].startswith("train 3/3 (100%)")

    scored = runner.invoke(app, ["evaluate", "--run", str(tmp_path / "log"), "--device", "cpu", "--n-boot", "20",
                                 "--threads", "1"])
    assert scored.exit_code == 0, scored.output
    assert "device: cpu (fp32), torch threads: 1" in scored.output
    assert re.search(r"^evaluate test \d+/\d+ \(100%\)", scored.output, re.M), scored.output

    # resuming the finished run: no "last loss nan", the last logged loss and a clear word instead
    again = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(prepared_store), "--device", "cpu",
                                "--out", str(tmp_path), "--name", "log", "--resume", "--threads", "1"])
    assert again.exit_code == 0, again.output
    assert "nan" not in again.output.lower() and "already complete" in again.output
    done = json.loads((tmp_path / "log" / "train_done.json").read_text())
    assert done["iteration"] == 3 and done["last_loss"] is not None
    assert f"{done['last_loss']:.4f}" in again.output

    # a train_done.json from an older version holding NaN: the table reads the loss from metrics.jsonl
    (tmp_path / "log" / "train_done.json").write_text(json.dumps({**done, "last_loss": float("nan")}))
    third = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(prepared_store), "--device", "cpu",
                                "--out", str(tmp_path), "--name", "log", "--resume", "--threads", "1"])
    assert third.exit_code == 0, third.output
    assert "nan" not in third.output.lower() and f"{done['last_loss']:.4f}" in third.output


# ---------------------------------------------------------------------------------------- small items


def test_model_set_bool_fields_take_only_booleans(tmp_path):
    from gdkvm.models.registry import model_config

    result = runner.invoke(app, ["train", "--data", str(tmp_path / "camus"), "--preset", "tiny", "--device", "cpu",
                                 "--model-set", "freeze_bn=maybe"])
    assert isinstance(result.exception, ConfigError) and "freeze_bn" in str(result.exception)
    assert "true or false" in str(result.exception)
    assert "device:" not in result.output  # refused before any work
    for text, value in (("true", True), ("no", False), ("1", True), ("0", False), (1, True), (False, False)):
        assert model_config("full", "tiny", freeze_bn=text).freeze_bn is value
    with pytest.raises(ConfigError, match="kpff"):
        model_config("full", "tiny", kpff="maybe")


def test_flags_show_no_bool_metavar():
    for command in (["train"], ["predict"], ["bench", "fps"], ["evaluate"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "--help" in result.output, command


def test_predict_prints_the_device_line_first(tmp_path):
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "no-run"), "--device", "cpu", "--threads", "1",
                                 str(tmp_path / "clip.avi")])
    assert result.exit_code != 0
    assert result.output.splitlines()[0] == "device: cpu (fp32), torch threads: 1"
