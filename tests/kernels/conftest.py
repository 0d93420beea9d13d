"""Fixtures for the Triton kernel tests (opt-in by name; nothing here is autouse).

* ``triton_device``: the device the kernel tests run on. Without CUDA it turns the Triton interpreter on
  (``TRITON_INTERPRET=1``) for the duration of the test only, so other test modules in the same pytest
  process are unaffected. ``gdkvm.kernels.gdr_triton`` picks the mode at launch time, so the import
  order of modules does not matter.
* ``nan_poison``: floating-point tensors from ``torch.empty`` / ``torch.empty_like`` /
  ``Tensor.new_empty`` come back NaN-filled, so any output element a kernel never writes shows up as NaN.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def triton_device(monkeypatch: pytest.MonkeyPatch) -> torch.device:
    if torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        return torch.device("cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return torch.device("cpu")


def _poisoned(make):
    def wrapper(*args, **kwargs):
        out = make(*args, **kwargs)
        if out.is_floating_point():
            out.fill_(float("nan"))
        return out

    return wrapper


@pytest.fixture
def nan_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "empty", _poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", _poisoned(torch.empty_like))
    monkeypatch.setattr(torch.Tensor, "new_empty", _poisoned(torch.Tensor.new_empty))
