"""`gdkvm prepare`: options reach the library, summaries print, errors are one line with exit code 1."""

import json
import subprocess
import sys
import types
from pathlib import Path

from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.data.store import open_store
from gdkvm.errors import DataError
from tests.data.fixtures import EchoVideoSpec, write_camus_dataset, write_echonet_dataset

runner = CliRunner()
GDKVM = Path(sys.executable).parent / "gdkvm"


def test_prepare_help_lists_subcommands():
    result = runner.invoke(app, ["prepare", "--help"])
    assert result.exit_code == 0
    for name in ("synthetic", "camus", "echonet"):
        assert name in result.output
    result = runner.invoke(app, ["prepare", "camus", "--help"])
    assert result.exit_code == 0 and "--labels" in result.output and "Examples" in result.output


def test_prepare_camus_and_rerun(tmp_path):
    write_camus_dataset(tmp_path / "raw", patients=5, splits=(3, 1, 1))
    out = tmp_path / "prepared"
    args = ["prepare", "camus", "--root", str(tmp_path / "raw" / "CAMUS_public"), "--out", str(out), "--size", "32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "prepared camus" in result.output and "train" in result.output
    assert (out / "camus" / "train" / "images.npy").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output


def test_prepare_echonet_root_must_be_the_dataset_folder(tmp_path):
    """A parent --root is refused in one line (nothing written); --search-below takes the copy found below,
    prints and records it, and warns about the splits that came out empty."""
    copy = write_echonet_dataset(tmp_path / "parent" / "old-copy", [EchoVideoSpec("V1"), EchoVideoSpec("V2")])
    out = tmp_path / "prepared"
    base = ["prepare", "echonet", "--root", str(tmp_path / "parent"), "--out", str(out), "--size", "16"]
    refused = runner.invoke(app, base)
    assert isinstance(refused.exception, DataError), refused.output
    message = str(refused.exception)
    assert "\n" not in message and "expected FileList.csv in it" in message
    assert f"--root {copy}" in message and "--search-below" in message
    assert not out.exists()
    result = runner.invoke(app, base + ["--search-below"])
    assert result.exit_code == 0, result.output
    assert f"reading EchoNet-Dynamic: {copy.resolve()}" in result.output and "found below" in result.output
    for split in ("val", "test"):
        assert f"warning: split '{split}' has 0 cases" in result.output
    assert "warning: split 'train'" not in result.output
    meta = json.loads((out / "echonet" / "store.json").read_text())
    assert meta["source_root"] == str(copy.resolve()) and meta["counts"]["train"] == 2
    assert "split 'val' has 0 cases" in meta["notes"] and "split 'test' has 0 cases" in meta["notes"]
    exact = runner.invoke(app, ["prepare", "echonet", "--root", str(copy), "--out", str(out), "--size", "16"])
    assert exact.exit_code == 0 and "up to date" in exact.output and "found below" not in exact.output
    assert f"reading EchoNet-Dynamic: {copy.resolve()}" in exact.output


def test_prepare_camus_lists_bad_cases_or_fails_strictly(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    (root / "database_split" / "subgroup_testing.txt").write_text("patient0004\npatient0077\n")
    out = tmp_path / "prepared"
    base = ["prepare", "camus", "--root", str(root), "--out", str(out), "--size", "16"]
    result = runner.invoke(app, base + ["--labels", "all", "--split", "official"])
    assert result.exit_code == 0, result.output
    assert "skipped bad cases" in result.output and "patient0077" in result.output
    strict = runner.invoke(app, base + ["--strict", "--out", str(tmp_path / "strict")])
    assert isinstance(strict.exception, DataError) and "patient folder not found" in str(strict.exception)
    assert not (tmp_path / "strict").exists()


def test_prepare_echonet(tmp_path):
    write_echonet_dataset(
        tmp_path / "raw", [EchoVideoSpec("V1"), EchoVideoSpec("V2", split="TEST", es_first=True)]
    )
    out = tmp_path / "prepared"
    result = runner.invoke(
        app,
        [
            "prepare",
            "echonet",
            "--root",
            str(tmp_path / "raw" / "EchoNet-Dynamic"),
            "--out",
            str(out),
            "--size",
            "32",
            "--sampling",
            "rint",
            "--clip",
            "earlier-later",
            "--frames",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "prepared echonet" in result.output
    meta = json.loads((out / "echonet" / "store.json").read_text())
    assert meta["options"] == {
        "size": 32,
        "sampling": "rint",
        "clip": "earlier-later",
        "frames": 6,
        "tracing_rows": "first",
        "gray": "channel",
        "mask_fill": "skimage",
        "protocol": None,
    }
    store = open_store(out / "echonet", "test")
    assert store.images.shape == (1, 6, 32, 32)
    assert store.manifest["phase_first"].tolist() == ["ED"]  # V2: ED (frame 5) precedes ES (frame 20)


def test_prepare_echonet_tracing_rows(tmp_path):
    orphan = [f"0X4F8859C8AB4DA9CB.avi,{50 - k % 2},{20 + k},{62 + k % 2},{20 + k},3" for k in range(21)]
    write_echonet_dataset(
        tmp_path / "raw", [EchoVideoSpec("V1"), EchoVideoSpec("V2", repeats_ed=2)], extra_tracings=orphan
    )
    base = ["prepare", "echonet", "--root", str(tmp_path / "raw" / "EchoNet-Dynamic"), "--size", "16", "--strict"]
    result = runner.invoke(app, base + ["--out", str(tmp_path / "exact"), "--tracing-rows", "exact"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "exact" / "echonet" / "store.json").read_text())
    assert meta["options"]["tracing_rows"] == "exact" and meta["skipped_tracing_rows"] == ["V2"]
    assert meta["counts"] == {"train": 1, "val": 0, "test": 0} and meta["bad_cases"] == []
    assert "note: 1 tracing(s) without a FileList row ignored: 0X4F8859C8AB4DA9CB.avi" in result.output
    assert "skipped by tracing_rows='exact' (MemSAM)" in result.output
    result = runner.invoke(app, base + ["--out", str(tmp_path / "first"), "--tracing-rows", "first"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "first" / "echonet" / "store.json").read_text())
    assert meta["options"]["tracing_rows"] == "first" and meta["counts"]["train"] == 2
    assert runner.invoke(app, base + ["--tracing-rows", "most"]).exit_code == 2
    help_text = runner.invoke(app, ["prepare", "echonet", "--help"], terminal_width=200).output
    assert "--tracing-rows" in help_text and "MemSAM" in help_text and "echonet/dynamic" in help_text


def test_invalid_choice_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["prepare", "camus", "--root", str(tmp_path), "--labels", "rv"])
    assert result.exit_code == 2


def test_prepare_synthetic_passes_options(tmp_path, monkeypatch):
    calls = {}

    def fake_write_phantom(out, patients=20, seed=0, *, echonet_beats=2.5, workers=1, progress=None,
                           difficulty="realistic", foreshortening=True):
        calls.update(out=Path(out), patients=patients, seed=seed, workers=workers, difficulty=difficulty,
                     foreshortening=foreshortening)
        progress(1, 2)
        progress(2, 2)
        root = Path(out)
        return types.SimpleNamespace(
            root=root,
            camus_root=root / "CAMUS_public",
            echonet_root=root / "EchoNet-Dynamic",
            truth_path=root / "phantom_truth.json",
            patients=patients,
        )

    fake = types.ModuleType("gdkvm.data.synthetic")
    fake.write_phantom = fake_write_phantom
    monkeypatch.setitem(sys.modules, "gdkvm.data.synthetic", fake)
    result = runner.invoke(
        app, ["prepare", "synthetic", "--out", str(tmp_path / "ph"), "--patients", "3", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert calls == {"out": tmp_path / "ph", "patients": 3, "seed": 5, "workers": 1, "difficulty": "realistic",
                     "foreshortening": True}
    assert f"gdkvm prepare camus --root {tmp_path / 'ph' / 'CAMUS_public'}" in result.output
    result = runner.invoke(app, ["prepare", "synthetic", "--out", str(tmp_path / "e"), "--difficulty", "easy"])
    assert result.exit_code == 0, result.output
    assert calls["difficulty"] == "easy"


def test_prepare_synthetic_rejects_an_unknown_difficulty(tmp_path):
    result = runner.invoke(app, ["prepare", "synthetic", "--out", str(tmp_path / "ph"), "--difficulty", "extreme"])
    assert result.exit_code != 0
    assert "unknown phantom difficulty 'extreme'" in str(result.exception)
    assert not (tmp_path / "ph").exists()


def test_installed_command_reports_one_line_error(tmp_path):
    missing = tmp_path / "no_such_dataset"
    out = tmp_path / "prepared"
    proc = subprocess.run(
        [str(GDKVM), "prepare", "camus", "--root", str(missing), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0] == f"error: {missing}: folder not found"
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_installed_command_strict_bad_case(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    image = root / "database_nifti" / "patient0003" / "patient0003_4CH_half_sequence.nii.gz"
    image.write_bytes(image.read_bytes()[:100])
    out = tmp_path / "prepared"
    proc = subprocess.run(
        [str(GDKVM), "prepare", "camus", "--root", str(root), "--out", str(out), "--strict", "--size", "16"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    first = [ln for ln in proc.stderr.splitlines() if ln.strip()][0]
    assert first.startswith(f"error: {image}: cannot read NIfTI")
    assert not out.exists()


def test_prepare_synthetic_for_real_then_both_datasets(tmp_path):
    out = tmp_path / "synthetic"
    result = runner.invoke(app, ["prepare", "synthetic", "--out", str(out), "--patients", "1", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "phantom_truth.json").is_file() and (out / "EchoNet-Dynamic" / "FileList.csv").is_file()
    folders = {"camus": out / "CAMUS_public", "echonet": out / "EchoNet-Dynamic"}
    assert f"gdkvm prepare camus --root {folders['camus']}" in result.output
    assert f"gdkvm prepare echonet --root {folders['echonet']}" in result.output
    prepared = tmp_path / "prepared"
    for dataset in ("camus", "echonet"):
        result = runner.invoke(
            app, ["prepare", dataset, "--root", str(folders[dataset]), "--out", str(prepared), "--size", "32",
                  "--strict"]
        )
        assert result.exit_code == 0, result.output
        assert f"prepared {dataset}" in result.output
        assert (prepared / dataset / "store.json").is_file()


def test_prepare_synthetic_without_foreshortening(tmp_path):
    result = CliRunner().invoke(app, ["prepare", "synthetic", "--out", str(tmp_path / "v2"), "--patients", "1",
                                      "--seed", "1", "--no-foreshortening"])
    assert result.exit_code == 0, result.output
    assert "(no foreshortening)" in result.output
    assert json.loads((tmp_path / "v2" / "phantom_truth.json").read_text())["foreshortening"] is False
