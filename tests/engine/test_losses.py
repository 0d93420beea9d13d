"""CE + soft Dice on hand-computed cases, and which frames are supervised."""

import math

import pytest
import torch

from gdkvm.engine.losses import (
    per_frame_ce,
    per_frame_soft_dice,
    segmentation_loss,
    supervised_frames,
)


def _two_class_logits(fg_logit: torch.Tensor) -> torch.Tensor:
    """(N, H, W) foreground log-odds -> (N, 2, H, W) logits whose softmax has that foreground prob."""
    return torch.stack([torch.zeros_like(fg_logit), fg_logit], dim=1)


def test_perfect_prediction_costs_almost_nothing():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1
    logits = _two_class_logits(torch.where(target.bool(), 30.0, -30.0).float())
    assert per_frame_soft_dice(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert per_frame_ce(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_inverted_prediction_dice_near_one():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # 8 foreground pixels
    logits = _two_class_logits(torch.where(target.bool(), -30.0, 30.0).float())
    # inter ~ 0, sum p ~ 8, sum g = 8: 1 - 1 / 17
    assert per_frame_soft_dice(logits, target).item() == pytest.approx(1 - 1 / 17, abs=1e-5)


def test_uniform_half_probability_by_hand():
    # p = 0.5 everywhere; 2 of 4 pixels foreground: CE = ln 2; Dice = (2*1 + 1) / (2 + 2 + 1) = 0.6
    target = torch.tensor([[[1, 1], [0, 0]]])
    logits = torch.zeros(1, 2, 2, 2)
    assert per_frame_ce(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    assert per_frame_soft_dice(logits, target).item() == pytest.approx(0.4, rel=1e-6)


def test_single_channel_logits_use_sigmoid_with_same_values():
    target = torch.tensor([[[1, 1], [0, 0]]])
    logits = torch.zeros(1, 1, 2, 2)
    assert per_frame_ce(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    assert per_frame_soft_dice(logits, target).item() == pytest.approx(0.4, rel=1e-6)


def test_empty_target_predicted_empty_is_free():
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    logits = _two_class_logits(torch.full((1, 3, 3), -30.0))
    assert per_frame_soft_dice(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_supervised_frames_ends_and_full():
    labeled = torch.tensor([[True, True, True, True], [False, True, True, True]])
    ends = supervised_frames(labeled, "ends")
    assert ends.tolist() == [[True, False, False, True], [False, False, False, True]]
    assert supervised_frames(labeled, "full").tolist() == labeled.tolist()
    with pytest.raises(ValueError):
        supervised_frames(labeled, "middle")


def test_loss_sums_only_selected_frames_and_averages():
    torch.manual_seed(0)
    b, t, h, w = 2, 3, 4, 4
    logits = torch.randn(b, t, 2, h, w, requires_grad=True)
    masks = (torch.rand(b, t, h, w) > 0.5).long()
    frames = torch.tensor([[True, False, True], [False, False, True]])
    sums = segmentation_loss(logits, masks, frames)
    sel = logits[frames]
    expected_ce = per_frame_ce(sel, masks[frames]).sum()
    expected_dice = per_frame_soft_dice(sel, masks[frames]).sum()
    assert sums.frames.item() == 3
    assert sums.ce.item() == pytest.approx(expected_ce.item(), rel=1e-6)
    assert sums.dice.item() == pytest.approx(expected_dice.item(), rel=1e-6)
    assert sums.total().item() == pytest.approx((expected_ce + expected_dice).item() / 3, rel=1e-6)
    # a global divisor (DDP) replaces the local count
    assert sums.total(6.0).item() == pytest.approx((expected_ce + expected_dice).item() / 6, rel=1e-6)
    sums.total().backward()
    # frames that are not supervised get no gradient
    assert torch.all(logits.grad[0, 1] == 0) and torch.all(logits.grad[1, :2] == 0)
    assert logits.grad[0, 0].abs().sum() > 0


def test_no_supervised_frame_gives_zero_connected_loss():
    logits = torch.randn(1, 2, 2, 4, 4, requires_grad=True)
    sums = segmentation_loss(logits, torch.zeros(1, 2, 4, 4, dtype=torch.long), torch.zeros(1, 2, dtype=torch.bool))
    assert sums.frames.item() == 0
    assert sums.total().item() == 0
    sums.total().backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0  # nothing leaks through


def test_weights_scale_terms():
    logits = torch.zeros(1, 1, 2, 2, 2)
    masks = torch.tensor([[[[1, 1], [0, 0]]]])
    frames = torch.ones(1, 1, dtype=torch.bool)
    only_ce = segmentation_loss(logits, masks, frames, ce_weight=1.0, dice_weight=0.0).total().item()
    only_dice = segmentation_loss(logits, masks, frames, ce_weight=0.0, dice_weight=2.0).total().item()
    assert only_ce == pytest.approx(math.log(2), rel=1e-6)
    assert only_dice == pytest.approx(0.8, rel=1e-6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        segmentation_loss(torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.long),
                          torch.ones(1, 2, dtype=torch.bool))
