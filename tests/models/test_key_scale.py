"""Key scaling keeps the summing memory rules stable however many pixels a frame has."""

import torch

from gdkvm.models.registry import build_model


def _state_norms(variant: str, key_scale: str, frames: int = 12, size: int = 128) -> list[float]:
    torch.manual_seed(0)
    model = build_model(variant, preset="tiny", key_scale=key_scale).eval()
    stepper = model.stepper()
    norms = []
    with torch.no_grad():
        for _ in range(frames):
            stepper.step(torch.rand(1, 1, size, size))
            state = stepper.state.memory
            norms.append(float(sum(v.double().norm() for v in state.values() if torch.is_tensor(v))))
    return norms


def test_scaled_keys_make_the_erase_a_contraction():
    """With keys scaled by 1/sqrt(N) the delta state stays bounded; summed over 64 pixels as written it
    grows without bound (the erase I - K^T K has eigenvalues far below -1)."""
    scaled = _state_norms("delta", "sqrt-pixels")
    raw = _state_norms("delta", "none")
    assert all(torch.isfinite(torch.tensor(scaled)))
    assert max(scaled) < 10 * max(scaled[0], 1e-6) + 10
    assert not all(torch.isfinite(torch.tensor(raw))) or raw[-1] > 1e3 * max(scaled[-1], 1e-6)


def test_softmax_and_gka_are_not_rescaled():
    model = build_model("gka", preset="tiny")
    keys = torch.rand(2, 64, 16)
    assert torch.equal(model._scale_keys(keys), keys)
    model = build_model("full", preset="tiny")
    assert torch.allclose(model._scale_keys(keys), keys / 8)
