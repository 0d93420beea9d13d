"""The release variant: parameter count, an independent plain transcription of the released recurrence,
the gate expansion, and the stale-pixel-feature switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import build_model, count_model_parameters, list_variants
from gdkvm.models.release import ReleaseGDKVM, expand_gates, release_config


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_registered_and_paper_count_near_35_2m():
    assert {"release", "release-stale"} <= set(list_variants())
    n = count_model_parameters("release", "paper")
    assert abs(n - 35.2e6) / 35.2e6 < 0.02, n
    assert count_model_parameters("release", "tiny") < 2_000_000


def test_gate_init_ranges():
    model = build_model("release", "tiny")
    a = model.A_log.exp()
    assert torch.all((a >= 0) & (a <= 16))
    dt = F.softplus(model.dt_bias)
    assert torch.all((dt >= 1e-4 - 1e-9) & (dt <= 0.1 + 1e-6))
    assert model.b_proj.bias is None and model.a_proj.bias is None
    assert model.b_proj.weight.shape == (model.config.memory_heads, model.config.value_dim)


def test_gate_expansion_per_channel():
    heads, cv = 4, 12
    alpha = torch.randn(2, 3, heads)
    beta = torch.randn(2, 3, heads)
    a, b = expand_gates(alpha, beta, cv)
    dv = cv // heads
    for c in range(cv):
        assert torch.equal(a[..., c], alpha[..., c % heads])
        assert torch.equal(b[..., c], beta[..., c // dv])


def _plain_release(model: ReleaseGDKVM, clip: torch.Tensor, stale: bool) -> torch.Tensor:
    """A deliberately plain per-frame loop of the released recurrence (one (b, n) state matrix at a time,
    gates channel by channel), using the model's encoders / fuser / transformer / decoder as black boxes."""
    cfg = model.config
    bsz, t, _, h, w = clip.shape
    heads, cv, ck = cfg.memory_heads, cfg.value_dim, cfg.key_dim
    dv = cv // heads
    o = cfg.num_objects
    a_coef = torch.exp(model.A_log)
    outs = []
    sensory = torch.zeros(bsz, o, cfg.sensory_dim, h // 16, w // 16, dtype=clip.dtype)
    last = torch.zeros(bsz, o, h, w, dtype=clip.dtype)
    S = None
    obj_sum = None
    prev_pix = None
    for i in range(t):
        img = (clip[:, i] - 0.5) / 0.5  # gray (B, 1, H, W); the key trunk takes it on 3 channels
        f4, f8, f16 = model.key_encoder(torch.cat([img, img, img], dim=1))
        pix = model.pix_proj(f16)
        key = torch.softmax(model.kpff(model.key_proj(f16), pix), dim=1)  # (B, Ck, hk, wk)
        hk, wk = key.shape[-2:]
        value, sensory = model.value_encoder(img, prev_pix if (stale and i > 0) else pix, sensory, last)
        summary = model.object_summarizer(last, value)
        K = key.reshape(bsz, ck, hk * wk).transpose(1, 2)  # (B, N, Ck)
        V = value.reshape(bsz, o, cv, hk * wk).transpose(2, 3)  # (B, O, N, Cv)
        newS = torch.zeros(bsz, o, ck, cv, dtype=clip.dtype)
        for b in range(bsz):
            for n in range(o):
                k, v = K[b], V[b, n]
                if S is None:
                    newS[b, n] = k.T @ v
                    continue
                s = S[b, n]
                beta_h = torch.sigmoid(s @ model.b_proj.weight.T)  # (Ck, H)
                alpha_h = -a_coef * F.softplus(s @ model.a_proj.weight.T + model.dt_bias)
                beta = torch.stack([beta_h[:, c // dv] for c in range(cv)], dim=1)
                alpha = torch.stack([alpha_h[:, c % heads] for c in range(cv)], dim=1)
                erase = beta * (k.T @ (k @ s))
                newS[b, n] = alpha * (s - erase) + beta * (k.T @ v)
        S = newS
        readout = torch.einsum("bpk,bnkv->bnvp", K, S).reshape(bsz, o, cv, hk, wk)
        obj_mem = summary if obj_sum is None else obj_sum
        grid = F.interpolate(last, size=(hk, wk), mode="area")
        fused = model.object_transformer(model.pixel_fuser(pix, readout, sensory, grid), obj_mem)[0]
        obj_logits, sensory = model.decoder(fused, f8, f4, sensory)
        logits = F.interpolate(soft_aggregate(torch.sigmoid(obj_logits)), size=(h, w), mode="bilinear",
                               align_corners=False)
        obj_sum = summary if obj_sum is None else obj_sum + summary
        last = torch.softmax(logits, dim=1)[:, 1:]
        prev_pix = pix
        outs.append(logits)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("stale", [False, True])
def test_model_equals_plain_transcription(stale):
    torch.manual_seed(0)
    model = ReleaseGDKVM(release_config("tiny", stale_pixel_features=stale)).double().eval()
    clip = torch.rand(2, 4, 1, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        got = model(clip)
        want = _plain_release(model, clip, stale)
    assert got.shape == (2, 4, 2, 32, 48)
    assert torch.allclose(got, want, atol=1e-9, rtol=0), (got - want).abs().max()


def test_stale_switch_changes_frames_from_one_on():
    """The release encodes frame t's value with frame t-1's pixel features, so frame 0 is unaffected and
    every frame from 1 on differs (frame 1's value already uses frame 0's features)."""
    torch.manual_seed(1)
    fixed = ReleaseGDKVM(release_config("tiny")).double().eval()
    stale = ReleaseGDKVM(release_config("tiny", stale_pixel_features=True)).double().eval()
    stale.load_state_dict(fixed.state_dict())
    clip = torch.rand(1, 4, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        a, b = fixed(clip), stale(clip)
    assert torch.equal(a[:, 0], b[:, 0])
    for i in range(1, 4):
        assert not torch.allclose(a[:, i], b[:, i], atol=1e-12), i
    assert build_model("release-stale", "tiny").config.stale_pixel_features
    assert not build_model("release", "tiny").config.stale_pixel_features


def test_logits_contract_and_gradients():
    torch.manual_seed(2)
    model = build_model("release", "tiny")
    logits = model(torch.rand(1, 3, 1, 32, 32))
    assert logits.shape == (1, 3, 2, 32, 32) and torch.isfinite(logits).all()
    logits.logsumexp(dim=2).mean().backward()
    for name in ("A_log", "dt_bias", "b_proj.weight", "a_proj.weight", "kpff.gate.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_aux_loss_finite_with_gradients_to_the_aux_head():
    from gdkvm.models.release_losses import AUX_WEIGHT, release_aux_loss

    torch.manual_seed(3)
    model = build_model("release", "tiny", num_objects=2)
    clip = torch.rand(2, 3, 1, 32, 32)
    logits, aux = model.forward_with_aux(clip)
    levels = model.config.transformer_blocks + 1
    assert aux["sensory_logits"].shape == (2, 3, 3, 2, 2)
    assert aux["query_logits"].shape == (2, 3, levels, 3, 2, 2)
    assert torch.equal(logits, model(clip))  # the aux heads do not change the output
    target = torch.randint(0, 3, (2, 3, 32, 32))
    losses = release_aux_loss(aux, target)
    assert torch.isfinite(losses["aux_total"]) and losses["aux_total"] > 0
    sensory = losses["aux_sensory_ce"] + losses["aux_sensory_dice"]
    assert torch.allclose(losses["aux_total"], sensory + losses["aux_query_ce"] + losses["aux_query_dice"])
    per_level = sum(losses[f"aux_query_ce_l{i}"] + losses[f"aux_query_dice_l{i}"] for i in range(levels))
    assert torch.allclose(losses["aux_query_ce"] + losses["aux_query_dice"], per_level)
    unweighted = release_aux_loss(aux, target, weight=1.0, query_weight=1.0)
    assert torch.allclose(losses["aux_total"], unweighted["aux_total"] * AUX_WEIGHT)
    only_sensory = release_aux_loss({"sensory_logits": aux["sensory_logits"]}, target)
    assert torch.allclose(only_sensory["aux_total"], sensory) and "aux_query_ce" not in only_sensory
    # a level's terms are the sensory formula applied to that level's prediction
    as_sensory = release_aux_loss({"sensory_logits": aux["query_logits"][:, :, 1]}, target)
    assert torch.allclose(losses["aux_query_ce_l1"], as_sensory["aux_sensory_ce"])
    assert torch.allclose(losses["aux_query_dice_l1"], as_sensory["aux_sensory_dice"])
    losses["aux_total"].backward()
    grads = [model.sensory_aux.weight.grad] + [head[1].weight.grad for head in model.object_transformer.aux_heads]
    for grad in grads:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_aux_loss_rejects_bad_shapes():
    from gdkvm.errors import ConfigError
    from gdkvm.models.release_losses import release_aux_loss

    with pytest.raises(ConfigError, match="target must be"):
        release_aux_loss({"sensory_logits": torch.zeros(1, 2, 2, 4, 4)}, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="'query_logits' must be"):
        release_aux_loss({"sensory_logits": torch.zeros(1, 2, 2, 4, 4), "query_logits": torch.zeros(1, 2, 2, 3, 4, 4)},
                         torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize("variant", ["release", "release-stale"])
def test_stepper_equals_clip(variant):
    torch.manual_seed(4)
    model = build_model(variant, "tiny").double().eval()
    clip = torch.rand(1, 4, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want = model(clip)
        stepper = model.stepper()
        got = torch.stack([stepper.step(clip[:, i]) for i in range(4)], dim=1)
    assert stepper.frames == 4
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("field", "value", "match"), [("embed_dim", 30, "divisible by 4"),
                                                        ("transformer_heads", 3, "transformer_heads"),
                                                        ("num_queries", 5, "must be even")])
def test_config_rejects_widths_the_transformer_cannot_use(field, value, match):
    from gdkvm.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        release_config("tiny", **{field: value})
