"""``--device``: every command answers a bad name or CUDA on a CPU machine with the same one line."""

import pytest
import torch
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import ConfigError
from gdkvm.utils.device import check_device_name, resolve_device

runner = CliRunner()

UNKNOWN = "unknown device '{}': choose auto, cpu, cuda, cuda:N"
NO_CUDA = "CUDA is not available on this machine; use --device cpu or auto"


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _commands(tmp_path, device):
    """Each command's argv with ``--device device``; the other arguments are just valid enough to get
    to the device (they name files that need not exist: the device is checked first)."""
    missing = tmp_path / "nowhere"
    return {
        "predict": ["predict", "--device", device, "--out", str(tmp_path / "p"), str(missing / "v.avi")],
        "train": ["train", "--data", str(missing), "--device", device, "--out", str(tmp_path / "r")],
        "evaluate": ["evaluate", "--run", str(missing), "--device", device],
        "ablate": ["ablate", "--table", "3", "--data", str(missing), "--device", device, "--out", str(tmp_path / "a")],
        "bench fps": ["bench", "fps", "--device", device, "--out", str(tmp_path / "b")],
        "bench kernels": ["bench", "kernels", "--device", device, "--out", str(tmp_path / "b")],
        "bench scaling": ["bench", "scaling", "--device", device, "--out", str(tmp_path / "b")],
    }


@pytest.mark.parametrize("command", ["predict", "train", "evaluate", "ablate", "bench fps", "bench kernels",
                                     "bench scaling"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps"])
def test_unknown_device_is_one_line(tmp_path, command, device):
    result = runner.invoke(app, _commands(tmp_path, device)[command])
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    assert str(result.exception) == UNKNOWN.format(device)


@pytest.mark.parametrize("command", ["predict", "train", "evaluate", "ablate", "bench fps", "bench kernels",
                                     "bench scaling"])
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_one_line(tmp_path, no_cuda, command, device):
    result = runner.invoke(app, _commands(tmp_path, device)[command])
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    assert str(result.exception) == NO_CUDA


def test_resolver():
    assert check_device_name(" CPU ") == "cpu"
    assert check_device_name("cuda:3") == "cuda:3"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("", "gpu", "cuda:", "cuda:-1", "cuda0", "cpu:0"):
        with pytest.raises(ConfigError, match="^unknown device "):
            check_device_name(bad)


def test_cuda_index_past_the_last_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"^--device cuda:1: this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:1")


def test_distributed_runs_refuse_a_fixed_gpu_index():
    from gdkvm.engine.distributed import DistInfo
    from gdkvm.engine.distributed import resolve_device as dist_resolve

    info = DistInfo(rank=1, world_size=2, local_rank=1)
    with pytest.raises(ConfigError, match="^--device cuda:0: a distributed run puts each rank on its own GPU"):
        dist_resolve("cuda:0", info)
    with pytest.raises(ConfigError, match="^unknown device 'gpu'"):
        dist_resolve("gpu", info)
    assert dist_resolve("cpu", info) == torch.device("cpu")
