"""Clip-consistent augmentation: identity at p=0, same transform on every frame, labels preserved."""

import torch

from gdkvm.data.augment import AugmentConfig, AugmentParams, apply_params, augment_clip, sample_params

ALWAYS = AugmentConfig(p_scale=1.0, p_rotate=1.0, p_gamma=1.0, p_contrast=1.0)


def _clip(t=6, h=32, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(t, 1, h, w, generator=g)
    masks = torch.randint(0, 4, (t, h, w), generator=g)
    return images, masks


def test_p_zero_is_identity():
    images, masks = _clip()
    for seed in range(5):
        out_i, out_m = augment_clip(
            images, masks, torch.Generator().manual_seed(seed), AugmentConfig.disabled()
        )
        assert torch.equal(out_i, images) and torch.equal(out_m, masks)


def test_same_transform_on_every_frame():
    frame_img = torch.rand(1, 1, 30, 26, generator=torch.Generator().manual_seed(1))
    yy, xx = torch.meshgrid(torch.arange(30), torch.arange(26), indexing="ij")
    frame_mask = ((yy - 15) ** 2 / 64 + (xx - 12) ** 2 / 36 <= 1).long() + (xx > 20).long() * 2
    images, masks = frame_img.repeat(5, 1, 1, 1), frame_mask.repeat(5, 1, 1)
    changed = 0
    for seed in range(8):
        out_i, out_m = augment_clip(images, masks, torch.Generator().manual_seed(seed), ALWAYS)
        assert out_i.shape == images.shape and out_m.shape == masks.shape
        assert out_i.dtype == torch.float32 and out_m.dtype == torch.int64
        for t in range(1, 5):
            assert torch.equal(out_i[t], out_i[0]) and torch.equal(out_m[t], out_m[0])
        changed += int(not torch.equal(out_m[0], frame_mask))
    assert changed == 8  # scale and rotation always on: the mask moved every time


def test_masks_stay_in_label_set_and_images_in_range():
    images, masks = _clip()
    for seed in range(10):
        out_i, out_m = augment_clip(images, masks, torch.Generator().manual_seed(seed), ALWAYS)
        assert set(out_m.unique().tolist()) <= {0, 1, 2, 3}
        assert out_i.min() >= 0 and out_i.max() <= 1


def test_deterministic_given_generator_and_probabilities_near_half():
    images, masks = _clip()
    a = augment_clip(images, masks, torch.Generator().manual_seed(3))
    b = augment_clip(images, masks, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    draws = [sample_params(torch.Generator().manual_seed(s), AugmentConfig()) for s in range(400)]
    for name in ("scale", "degrees", "gamma", "contrast"):
        rate = sum(getattr(p, name) is not None for p in draws) / len(draws)
        assert 0.4 < rate < 0.6, (name, rate)
    gammas = [p.gamma for p in draws if p.gamma is not None]
    assert 0.7 <= min(gammas) and max(gammas) <= 1.5


def test_rotation_by_quarter_turns_matches_rot90_and_images_follow_masks():
    _, masks = _clip(t=2, h=16, w=16)
    images = masks[:, None].float() / 3
    params = AugmentParams(scale=None, degrees=90.0, gamma=None, contrast=None)
    out_i, out_m = apply_params(images, masks, params)
    back_i, back_m = apply_params(
        out_i, out_m, AugmentParams(scale=None, degrees=-90.0, gamma=None, contrast=None)
    )
    assert torch.equal(back_m, masks)
    quarter = [torch.rot90(masks, k, dims=(1, 2)) for k in (1, -1)]
    assert any(torch.equal(out_m, q) for q in quarter)
    assert torch.allclose(out_i[:, 0] * 3, out_m.float(), atol=1e-4)


def test_scaling_zooms_about_the_centre_and_pads_with_background():
    masks = torch.ones(1, 20, 20, dtype=torch.long)
    images = torch.ones(1, 1, 20, 20)
    out_i, out_m = apply_params(
        images, masks, AugmentParams(scale=0.5, degrees=None, gamma=None, contrast=None)
    )
    assert out_m.shape == (1, 20, 20)
    assert out_m[0, 10, 10] == 1 and out_m[0, 0, 0] == 0 and out_m[0, 19, 19] == 0
    assert out_m.sum() == 100  # the 20x20 square shrinks to 10x10, centred
    big_i, big_m = apply_params(
        images, masks, AugmentParams(scale=2.0, degrees=None, gamma=None, contrast=None)
    )
    assert big_m.all() and torch.allclose(big_i, images)  # zoom-in crops back to size


def test_gamma_and_contrast_values():
    images = torch.tensor([0.25, 0.5, 1.0]).view(1, 1, 1, 3)
    masks = torch.zeros(1, 1, 3, dtype=torch.long)
    out, _ = apply_params(images, masks, AugmentParams(scale=None, degrees=None, gamma=2.0, contrast=None))
    assert torch.allclose(out.flatten(), torch.tensor([0.0625, 0.25, 1.0]))
    out, _ = apply_params(images, masks, AugmentParams(scale=None, degrees=None, gamma=None, contrast=0.5))
    mean = images.mean()
    assert torch.allclose(out.flatten(), (images.flatten() - mean) * 0.5 + mean)


# ------------------------------------------------------------------ the robust (scanner-variety) profile
def test_paper_profile_draws_are_unchanged_by_the_robust_fields():
    for seed in range(20):
        a = sample_params(torch.Generator().manual_seed(seed), AugmentConfig())
        b = sample_params(torch.Generator().manual_seed(seed), AugmentConfig.robust())
        # the paper's block of 8 draws comes first in both: where both apply a transform, its value is the same
        if a.scale is not None and b.scale is not None:
            lo, hi = AugmentConfig().scale_range
            lo2, hi2 = AugmentConfig.robust().scale_range
            assert abs((a.scale - lo) / (hi - lo) - (b.scale - lo2) / (hi2 - lo2)) < 1e-12
        assert a.shift is None and a.gain is None and a.shadows is None


def test_robust_profile_keeps_shapes_ranges_and_labels():
    images, masks = _clip(t=4, h=48, w=48)
    seen = {"shift": 0, "gain": 0, "haze": 0, "blur": 0, "speckle": 0, "shadows": 0}
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        params = sample_params(g, AugmentConfig.robust())
        for name in seen:
            seen[name] += getattr(params, name) is not None
        out_i, out_m = apply_params(images, masks, params)
        assert out_i.shape == images.shape and out_m.shape == masks.shape and out_m.dtype == masks.dtype
        assert out_i.min() >= 0 and out_i.max() <= 1 and torch.isfinite(out_i).all()
        assert set(out_m.unique().tolist()) <= {0, 1, 2, 3}
        again = apply_params(images, masks, params)
        assert torch.equal(again[0], out_i) and torch.equal(again[1], out_m)  # deterministic
    assert all(5 <= n <= 25 for n in seen.values()), seen


def test_intensity_only_transforms_leave_masks_alone():
    images, masks = _clip(t=3, h=40, w=40)
    params = AugmentParams(scale=None, degrees=None, gamma=None, contrast=None, gain=0.7, haze=0.2, blur=1.0,
                           speckle=0.3, speckle_seed=5, shadows=((0.0, 0.1, 0.3, 0.9),))
    out_i, out_m = apply_params(images, masks, params)
    assert torch.equal(out_m, masks)
    assert not torch.equal(out_i, images)


def test_shift_moves_the_content():
    images = torch.zeros(1, 1, 40, 40)
    images[0, 0, 18:22, 18:22] = 1.0
    masks = (images[:, 0] > 0.5).long()
    params = AugmentParams(scale=None, degrees=None, gamma=None, contrast=None, shift=(0.1, -0.2))
    _, out_m = apply_params(images, masks, params)
    rows, cols = torch.nonzero(out_m[0], as_tuple=True)
    assert abs(cols.float().mean().item() - (19.5 + 4)) < 0.6  # +0.1 of 40 px to the right
    assert abs(rows.float().mean().item() - (19.5 - 8)) < 0.6  # 0.2 of 40 px up


def test_shadow_darkens_a_wedge_below_its_start():
    images = torch.full((1, 1, 64, 64), 0.5)
    masks = torch.zeros(1, 64, 64, dtype=torch.long)
    params = AugmentParams(scale=None, degrees=None, gamma=None, contrast=None,
                           shadows=((0.0, 0.1, 0.5, 0.9),))
    out, _ = apply_params(images, masks, params)
    assert out[0, 0, 60, 32] < 0.15  # deep, on the beam: shadowed
    assert out[0, 0, 10, 32] > 0.45  # above the start: untouched
    assert out[0, 0, 60, 2] > 0.45  # far off the beam: untouched
