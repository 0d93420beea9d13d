"""The release's network parts against plain transcriptions written from the architecture description
(loops, explicit formulas) on random weights: positional encoding, summariser pooling, the attention mask,
one transformer block's masked attention, the transformer's aux-head / mask chaining, the decoder and the
value encoder's input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gdkvm.errors import ConfigError
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.release_modules import ReleaseMaskDecoder, ReleaseUpsampleBlock, ReleaseValueEncoder
from gdkvm.models.release_transformer import (
    ReleaseObjectSummarizer,
    ReleaseObjectTransformer,
    query_attention_mask,
    release_position_encoding,
)

D = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


def test_position_encoding_formula():
    h, w, dim = 3, 5, 16
    pe = release_position_encoding(h, w, dim, dtype=D)
    assert pe.shape == (h, w, dim)
    half = dim // 2
    for y in range(h):
        for x in range(w):
            for c in range(dim):
                axis_pos, n = (x, w) if c < half else (y, h)
                j = c % half
                freq = 128.0 ** (-(j - j % 2) / half)
                p = axis_pos / (n - 1 + 1e-6) * 32.0
                want = math.sin(p * freq) if j % 2 == 0 else math.cos(p * freq)
                assert abs(pe[y, x, c].item() - want) < 1e-12, (y, x, c)
    with pytest.raises(ConfigError, match="divisible by 4"):
        release_position_encoding(2, 2, 6)


def test_summarizer_area_weighted_pooling():
    b, o, cv, e, q, h, w = 2, 2, 6, 8, 4, 2, 3
    summ = ReleaseObjectSummarizer(cv, e, q).to(D)
    masks = torch.rand(b, o, 4 * h, 4 * w, dtype=D)
    value = torch.randn(b, o, cv, h, w, dtype=D)
    got = summ(masks, value)
    assert got.shape == (b, o, q, e + 1)
    pe = release_position_encoding(h, w, e, dtype=D)
    want = torch.zeros(b, o, q, e + 1, dtype=D)
    for bi in range(b):
        for oi in range(o):
            for y in range(h):
                for x in range(w):
                    fg = masks[bi, oi, 4 * y:4 * y + 4, 4 * x:4 * x + 4].mean()  # area resize
                    z = summ.input_proj(value[bi, oi, :, y, x]) + pe[y, x]
                    feat = summ.feature_mlp(z)
                    logit = summ.weight_mlp(z)
                    for qi in range(q):
                        allowed = fg if qi < q // 2 else 1 - fg
                        wgt = torch.sigmoid(logit[qi]) * allowed
                        want[bi, oi, qi, :e] += wgt * feat
                        want[bi, oi, qi, e] += wgt
    assert torch.allclose(got, want, atol=1e-12)


def _plain_mask(obj_logits, heads, q):
    b, o, h, w = obj_logits.shape
    p = torch.sigmoid(obj_logits)
    out = torch.zeros(b * o * heads, q, h * w, dtype=torch.bool)
    for bi in range(b):
        for oi in range(o):
            fg = []
            for pix in range(h * w):
                y, x = divmod(pix, w)
                probs = [float(torch.prod(1 - p[bi, :, y, x]))] + [float(v) for v in p[bi, :, y, x]]
                logits = [math.log(min(max(v, 1e-7), 1 - 1e-7) / (1 - min(max(v, 1e-7), 1 - 1e-7))) for v in probs]
                fg.append(logits[oi + 1] >= max(logits))
            for qi in range(q):
                row = [not f for f in fg] if qi < q // 2 else list(fg)
                if all(row):
                    row = [False] * len(row)
                for hd in range(heads):
                    out[(bi * o + oi) * heads + hd, qi] = torch.tensor(row)
    return out


def test_attention_mask_rule():
    logits = torch.randn(2, 3, 2, 3, dtype=D) * 3
    logits[0, 0] = 20.0  # object 0 of item 0 is foreground everywhere: its background queries get unblocked
    got = query_attention_mask(logits, heads=2, num_queries=4)
    assert torch.equal(got, _plain_mask(logits, 2, 4))
    assert not got[:2, 2:].any()


def _plain_mha(mha, q_in, k_in, v_in, blocked):
    """Multi-head attention from the in/out projection weights: per head softmax(q k^T / sqrt(d)) v."""
    e = q_in.shape[-1]
    heads = mha.num_heads
    d = e // heads
    wq, wk, wv = mha.in_proj_weight.split(e)
    bq, bk, bv = mha.in_proj_bias.split(e)
    n = q_in.shape[0]
    out = torch.zeros_like(q_in)
    for i in range(n):
        q, k, v = q_in[i] @ wq.T + bq, k_in[i] @ wk.T + bk, v_in[i] @ wv.T + bv
        heads_out = []
        for hd in range(heads):
            sl = slice(hd * d, (hd + 1) * d)
            scores = q[:, sl] @ k[:, sl].T / math.sqrt(d)
            if blocked is not None:
                scores = scores.masked_fill(blocked[i * heads + hd], float("-inf"))
            heads_out.append(torch.softmax(scores, dim=-1) @ v[:, sl])
        out[i] = torch.cat(heads_out, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias
    return out


def test_one_block_equals_plain_transcription():
    """Query reads pixels under the mask (residual from the normalised query), self-attention (same),
    pre-norm FFN; pixels read queries (no norm, plain residual); then the channel-attention conv block."""
    b, o, e, q, h, w, heads = 1, 2, 8, 4, 2, 3, 2
    tr = ReleaseObjectTransformer(e, q, num_blocks=1, heads=heads, ff_dim=16).to(D).eval()
    block = tr.blocks[0]
    query, query_pe = torch.randn(b * o, q, e, dtype=D), torch.randn(b * o, q, e, dtype=D)
    pixel, pixel_pe = torch.randn(b, o, e, h, w, dtype=D), torch.randn(b * o, h * w, e, dtype=D)
    mask = query_attention_mask(torch.randn(b, o, h, w, dtype=D), heads, q)
    assert mask.any() and not mask.all()
    with torch.no_grad():
        got_q, got_p = block(query, query_pe, pixel, pixel_pe, mask)
        flat = pixel.flatten(3).flatten(0, 1).transpose(1, 2)
        a = block.query_reads_pixels
        x = a.norm(query)
        x = x + _plain_mha(a.attn, x + query_pe, flat + pixel_pe, flat, mask)
        s = block.query_self_attention
        x = s.norm(x)
        x = x + _plain_mha(s.attn, x + query_pe, x + query_pe, x, None)
        f = block.query_ffn
        x = x + f.fc2(torch.relu(f.fc1(f.norm(x))))
        p = flat + _plain_mha(block.pixel_reads_queries.attn, flat + pixel_pe, x + query_pe, x, None)
        p = block.pixel_ffn(p.transpose(1, 2).reshape(b * o, e, h, w)).view(b, o, e, h, w)
    assert torch.allclose(got_q, x, atol=1e-12)
    assert torch.allclose(got_p, p, atol=1e-12)


def test_transformer_aux_heads_and_mask_chaining():
    b, o, e, q, h, w, heads, blocks = 1, 2, 8, 4, 2, 2, 2, 2
    tr = ReleaseObjectTransformer(e, q, num_blocks=blocks, heads=heads, ff_dim=16).to(D).eval()
    pixel = torch.randn(b, o, e, h, w, dtype=D)
    memory = torch.rand(b, o, q, e + 1, dtype=D)
    with torch.no_grad():
        out, aux = tr(pixel, memory)
        summaries = (memory[..., :e] / (memory[..., e:] + 1e-4)).flatten(0, 1)
        query = tr.query_init.weight + tr.summary_to_init(summaries)
        query_pe = tr.query_embed.weight + tr.summary_to_embed(summaries)
        pe = release_position_encoding(h, w, e, dtype=D).flatten(0, 1)
        flat = lambda t: t.flatten(3).flatten(0, 1).transpose(1, 2)  # noqa: E731
        conv = lambda m, t: m(t.flatten(0, 1)).view(b, o, -1, h, w)  # noqa: E731
        pixel_pe = flat(conv(tr.pixel_embed, pixel)) + pe
        x = conv(tr.pixel_init, pixel)
        want_aux = [conv(tr.aux_heads[0][1], torch.relu(x))[:, :, 0]]
        for i in range(blocks):
            query, x = tr.blocks[i](query, query_pe, x, pixel_pe, _plain_mask(want_aux[-1], heads, q))
            want_aux.append(conv(tr.aux_heads[i + 1][1], torch.relu(x))[:, :, 0])
    assert aux.shape == (b, o, blocks + 1, h, w)
    assert torch.allclose(out, x, atol=1e-12)
    assert torch.allclose(aux, torch.stack(want_aux, dim=2), atol=1e-12)


def test_upsample_block_and_decoder_skips():
    blk = ReleaseUpsampleBlock(4, 3).to(D)
    g, skip = torch.randn(2, 2, 4, 2, 3, dtype=D), torch.randn(2, 4, 4, 6, dtype=D)
    with torch.no_grad():
        got = blk(g, skip)
        up = F.interpolate(g.flatten(0, 1), scale_factor=2, mode="bilinear", align_corners=False)
        x = up + skip.repeat_interleave(2, dim=0)
        want = blk.shortcut(x) + F.gelu(blk.conv2(F.gelu(blk.conv1(x))))
    assert torch.allclose(got, want.view(2, 2, 3, 4, 6), atol=1e-12)

    dec = ReleaseMaskDecoder(8, (6, 5), (4, 3), sensory_dim=7).to(D)
    v16, sensory = torch.randn(1, 2, 8, 2, 2, dtype=D), torch.rand(1, 2, 7, 2, 2, dtype=D)
    f8, f4 = torch.randn(1, 6, 4, 4, dtype=D), torch.randn(1, 5, 8, 8, dtype=D)
    with torch.no_grad():
        logits, new_sensory = dec(v16, f8, f4, sensory)
        assert logits.shape == (1, 2, 8, 8) and new_sensory.shape == sensory.shape
        # both skips reach the logits and the sensory state
        for i, other in enumerate([(f8 + 1, f4), (f8, f4 + 1)]):
            l2, s2 = dec(v16, *other, sensory)
            assert not torch.allclose(l2, logits) and not torch.allclose(s2, new_sensory), i
        # ... only through their 1x1 projections
        for proj in (dec.skip8_proj, dec.skip4_proj):
            proj.weight.zero_()
        base = dec(v16, f8, f4, sensory)
        moved = dec(v16, torch.randn_like(f8), torch.randn_like(f4), sensory)
    assert all(torch.equal(a, c) for a, c in zip(base, moved, strict=True))


def test_decoder_sensory_update_transcription():
    dec = ReleaseMaskDecoder(8, (6, 5), (4, 3), sensory_dim=7).to(D)
    v16, sensory = torch.randn(1, 1, 8, 2, 2, dtype=D), torch.rand(1, 1, 7, 2, 2, dtype=D)
    f8, f4 = torch.randn(1, 6, 4, 4, dtype=D), torch.randn(1, 5, 8, 8, dtype=D)
    with torch.no_grad():
        logits, new_sensory = dec(v16, f8, f4, sensory)
        v8 = dec.up_16_8(v16, dec.skip8_proj(f8))[0]
        v4 = dec.up_8_4(v8[None], dec.skip4_proj(f4))[0]
        assert torch.allclose(logits[0], dec.pred(v4)[:, 0], atol=1e-12)
        g = (dec.sensory_in16(v16[0]) + dec.sensory_in8(F.avg_pool2d(v8, 2))
             + dec.sensory_in4(F.avg_pool2d(torch.cat([v4, dec.pred(v4)], dim=1), 4)))
        gates = dec.sensory_update.transform(torch.cat([g, sensory[0]], dim=1))
        f, u, c = gates[:, :7], gates[:, 7:14], gates[:, 14:]
        want = torch.sigmoid(f) * (1 - torch.sigmoid(u)) * sensory[0] + torch.sigmoid(u) * torch.tanh(c)
    assert torch.allclose(new_sensory[0], want, atol=1e-12)
    assert dec.sensory_update.transform.bias.abs().sum() > 0  # PyTorch's default bias init, not zeros


def test_value_encoder_input_is_gray_mask_others():
    enc = ReleaseValueEncoder("resnet18", 8, pixel_dim=6, value_dim=8, sensory_dim=5).to(D).eval()
    assert enc.backbone.conv1.in_channels == 3
    gray = torch.randn(1, 1, 32, 32, dtype=D)
    pix, sensory = torch.randn(1, 6, 2, 2, dtype=D), torch.rand(1, 2, 5, 2, 2, dtype=D)
    masks = torch.rand(1, 2, 32, 32, dtype=D)
    with torch.no_grad():
        value, new_sensory = enc(gray, pix, sensory, masks)
        for oi in range(2):
            x = torch.cat([gray, masks[:, oi:oi + 1], masks[:, 1 - oi:2 - oi].clamp(0, 1)], dim=1)
            f16 = enc.backbone(x)[2]
            want = enc.fuser(pix, f16[:, None])
            assert torch.allclose(value[:, oi], want[:, 0], atol=1e-12), oi
        assert torch.equal(new_sensory, enc.sensory_update(value, sensory))


def test_object_axis_soft_aggregate_matches_release_aggregate():
    """The query aux logits use the same soft aggregation as the main output."""
    from gdkvm.models.release import ReleaseGDKVM

    obj = torch.randn(2, 3, 4, 2, 2, dtype=D)  # (B, O, L, h, w)
    got = ReleaseGDKVM.query_aux_logits(obj)
    assert got.shape == (2, 4, 4, 2, 2)
    for level in range(4):
        assert torch.equal(got[:, level], soft_aggregate(torch.sigmoid(obj[:, :, level])))
