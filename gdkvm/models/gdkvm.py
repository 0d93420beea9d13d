"""The GDKVM network as stages, a clip-level wrapper for training and a streaming stepper for inference.

Per frame t, in the paper's order (``step_order="paper"``, the default; Sec. 3.1, Eq. 3, and the authors'
released code):

1. ``encode_image``: key encoder (ResNet-50 to stride 16) -> pixel features F_Pix (Cp) and local keys
   F_K (Ck) -> optional KPFF -> keys K_t made non-negative by a softmax over channels per pixel (the
   softmax-attention memory takes the pre-softmax keys and L2-normalises them itself);
   stride-8/4 features are kept as decoder skips.
2. ``encode_value``: value encoder on the frame's image + the *previous* frame's predicted mask (zeros
   before the first frame, or the prompt) -> values V_t; updates the sensory state and object summaries.
3. ``write`` then ``read`` in one fused call: S_t = rule(S_{t-1}, K_t, V_t), readout O_t = K_t S_t.
4. ``segment``: readout + sensory state + last mask -> pixel fuser -> object transformer -> decoder
   -> per-object logits, soft aggregation into (B, O + 1, H, W) logits (background first); the
   decoder also updates the sensory state.

``step_order="read-first"`` (the order of gdkvm 0.1, kept for its checkpoints and as an ablation) reads
S_{t-1} with K_t, segments, then encodes V_t from the frame's *own* prediction and writes S_t; there the
first frame is segmented from an empty memory.

A prompt mask on the first frame replaces that frame's segmentation (its logits are the prompt's
soft-aggregated log-odds) and is the mask its values are encoded from (read-first) or the previous mask
of the next frame (paper). ``GDKVM.forward`` (the clip wrapper) encodes every frame's image in one batched
key-encoder call and then runs the recurrence; :class:`Stepper` encodes one frame per call. Both share
``advance``, so training and streaming inference cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import GdkvmError
from gdkvm.models.backbone import ResNetTrunk
from gdkvm.models.config import ModelConfig
from gdkvm.models.interface import SegmentationModelBase, state_element_bytes
from gdkvm.models.kpff import KPFF
from gdkvm.models.memory import MemoryRule, build_memory
from gdkvm.models.modules import MaskDecoder, PixelFuser, ValueEncoder, soft_aggregate
from gdkvm.models.transformer import ObjectSummarizer, ObjectTransformer

STRIDE = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageFeatures:
    """Everything ``encode_image`` derives from a batch of frames (leading dimension B).

    image (B, 3, H, W) normalised; f4 (B, C4, H/4, W/4), f8 (B, C8, H/8, W/8) skips; pix (B, Cp, h, w)
    pixel features; key (B, Ck, h, w) non-negative keys summing to 1 over channels at every pixel (the
    pre-softmax key projection for a memory rule with ``raw_keys``, i.e. softmax attention).
    """

    image: Tensor
    f4: Tensor
    f8: Tensor
    pix: Tensor
    key: Tensor

    def frame(self, t: int, batch: int) -> ImageFeatures:
        """Features of frame ``t`` from features computed for (batch * T) frames in clip order."""
        return frame_features(self, t, batch)


def frame_features(feats: Any, t: int, batch: int) -> Any:
    """Frame ``t`` of a features dataclass whose tensor fields were computed for (batch * T) frames in clip
    order: every field (batch * T, ...) -> (batch, ...)."""
    def pick(x: Tensor) -> Tensor:
        return x.view(batch, -1, *x.shape[1:])[:, t]

    return type(feats)(*(pick(getattr(feats, f.name)) for f in fields(feats)))


@dataclass
class RecurrentState:
    """The whole state carried from frame to frame (constant size for every rule but softmax).

    memory: the memory rule's state (batch B * O); sensory (B, O, Cs, h, w); prev_mask (B, O, H, W)
    the previous frame's object probabilities (or the prompt) at the image resolution, zeros before the
    first frame; obj_memory (B, O, Q, E + 1) running sums of object summaries (None without the object
    transformer); frames: frames seen so far.
    """

    memory: dict[str, Tensor]
    sensory: Tensor
    prev_mask: Tensor
    obj_memory: Tensor | None
    frames: int = 0


def _check_video_tensor(x: object, name: str, layout: str, ndim: int) -> None:
    """One-line GdkvmError unless ``x`` is a float tensor of ``ndim`` dims, one channel at dim -3, H, W % 16 == 0."""
    expected = f"expected a float tensor of shape {layout} with H and W divisible by 16"
    if not isinstance(x, Tensor):
        raise GdkvmError(f"{name}: {expected}, got {type(x).__name__}")
    if x.ndim != ndim or x.shape[-3] != 1 or 0 in x.shape:
        raise GdkvmError(f"{name}: {expected}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise GdkvmError(f"{name}: {expected}, got dtype {x.dtype}")
    if x.shape[-2] % STRIDE or x.shape[-1] % STRIDE:
        raise GdkvmError(f"{name}: {expected}, got H x W = {x.shape[-2]} x {x.shape[-1]}")


def check_clip(clip: object) -> None:
    """Raise a one-line GdkvmError unless ``clip`` is a float tensor (B, T, 1, H, W) with H, W % 16 == 0."""
    _check_video_tensor(clip, "clip", "(B, T, 1, H, W)", 5)


def check_frame(frame: object) -> None:
    """Raise a one-line GdkvmError unless ``frame`` is a float tensor (B, 1, H, W) with H, W % 16 == 0."""
    _check_video_tensor(frame, "frame", "(B, 1, H, W)", 4)


def run_clip(model: nn.Module, clip: Tensor, first_frame_mask: Tensor | None,
             init_state: Callable[[int, int, int, torch.device, torch.dtype], Any]) -> Tensor:
    """The clip wrapper shared by GDKVM and the memory baselines: clip (B, T, 1, H, W) -> logits
    (B, T, O + 1, H, W).

    All T frames go through ``model.encode_image`` in one batched call; then ``model.advance`` runs frame
    by frame from ``init_state(B, H, W, device, dtype)`` (the last frame is not written to memory).
    ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map prompts frame 0.
    """
    check_clip(clip)
    dtype = model.pixel_mean.dtype
    clip = clip.to(device=model.pixel_mean.device, dtype=dtype)
    b, t, _, h, w = clip.shape
    prompt = None
    if first_frame_mask is not None:
        prompt = prompt_masks(first_frame_mask, b, model.num_objects, (h, w), dtype).to(clip.device)
    all_feats = model.encode_image(clip.flatten(0, 1))
    state = init_state(b, h, w, clip.device, all_feats.key.dtype)
    outputs = []
    for i in range(t):
        logits, state = model.advance(state, all_feats.frame(i, b), prompt if i == 0 else None,
                                      update_memory=i < t - 1)
        outputs.append(logits)
    return torch.stack(outputs, dim=1)


def prompt_masks(mask: object, batch: int, num_objects: int, size: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """Normalise a first-frame prompt to object probabilities (B, O, H, W) in [0, 1].

    Accepted: a float/bool tensor (B, O, H, W) of per-object masks in [0, 1], or an integer label map
    (B, H, W) with 0 = background and 1..O the objects.
    """
    shape_txt = f"(B={batch}, O={num_objects}, H={size[0]}, W={size[1]}) masks or a (B, H, W) label map"
    if not isinstance(mask, Tensor):
        raise GdkvmError(f"first_frame_mask: expected a tensor {shape_txt}, got {type(mask).__name__}")
    if mask.ndim == 3 and not mask.is_floating_point() and mask.dtype != torch.bool:
        if tuple(mask.shape) != (batch, *size):
            raise GdkvmError(f"first_frame_mask: expected {shape_txt}, got shape {tuple(mask.shape)}")
        if int(mask.min()) < 0 or int(mask.max()) > num_objects:
            raise GdkvmError(f"first_frame_mask: labels must be in 0..{num_objects}, got "
                             f"{int(mask.min())}..{int(mask.max())}")
        labels = torch.arange(1, num_objects + 1, device=mask.device).view(1, -1, 1, 1)
        return (mask.unsqueeze(1) == labels).to(dtype)
    if tuple(mask.shape) != (batch, num_objects, *size):
        raise GdkvmError(f"first_frame_mask: expected {shape_txt}, got shape {tuple(mask.shape)}")
    mask = mask.to(dtype)
    if mask.numel() and (float(mask.min()) < 0 or float(mask.max()) > 1):
        raise GdkvmError("first_frame_mask: mask values must lie in [0, 1]")
    return mask


class GDKVM(SegmentationModelBase):
    """GDKVM: a linear key-value memory network for echocardiography video segmentation.

    Args:
        config: the architecture (see :class:`gdkvm.models.config.ModelConfig`).
        variant: the registry name it was built as (recorded in checkpoints), if any.

    ``model(clip)`` with clip (B, T, 1, H, W), float in [0, 1], H and W divisible by 16, returns logits
    (B, T, O + 1, H, W), channel 0 being the background; ``model.stepper()`` streams frames. It implements
    :class:`gdkvm.models.interface.SegmentationModel`; its memory rule decides the state's capabilities.
    """

    def __init__(self, config: ModelConfig, variant: str | None = None):
        super().__init__()
        self.config = config
        self.variant = variant
        cfg = config
        self.num_objects = cfg.num_objects
        self.key_encoder = ResNetTrunk(cfg.key_backbone, in_channels=3, width=cfg.key_backbone_width,
                                       freeze_bn=cfg.freeze_bn)
        c4, c8, c16 = self.key_encoder.out_channels
        self.pix_proj = nn.Conv2d(c16, cfg.pixel_dim, kernel_size=1)
        self.key_proj = nn.Conv2d(cfg.pixel_dim, cfg.key_dim, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)
        self.kpff = KPFF(cfg.key_dim, cfg.pixel_dim) if cfg.kpff else None
        self.value_encoder = ValueEncoder(cfg.value_backbone, cfg.value_backbone_width, cfg.pixel_dim,
                                          cfg.value_dim, cfg.sensory_dim, freeze_bn=cfg.freeze_bn)
        self.memory = build_memory(cfg.memory_rule, cfg.key_dim, cfg.value_dim, heads=cfg.memory_heads,
                                   decay_form=cfg.decay_form)
        self.pixel_fuser = PixelFuser(cfg.pixel_dim, cfg.value_dim, cfg.sensory_dim, cfg.embed_dim)
        if cfg.object_transformer:
            self.object_summarizer: ObjectSummarizer | None = ObjectSummarizer(
                cfg.value_dim, cfg.embed_dim, cfg.num_queries)
            self.object_transformer: ObjectTransformer | None = ObjectTransformer(
                cfg.embed_dim, cfg.num_queries, cfg.transformer_blocks, cfg.transformer_heads,
                cfg.transformer_ff_dim)
        else:
            self.object_summarizer = None
            self.object_transformer = None
        self.decoder = MaskDecoder(cfg.embed_dim, (c8, c4), cfg.decoder_dims, cfg.sensory_dim)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ declared interface
    @property
    def memory_module(self) -> MemoryRule:
        """The memory rule (``config.memory_rule``)."""
        return self.memory

    @property
    def freezes_batchnorm(self) -> bool:
        """``config.freeze_bn``."""
        return bool(self.config.freeze_bn)

    @property
    def graph_capture_blocker(self) -> str:
        """Empty when a frame step can be captured as a CUDA graph; else why not (a growing memory, or the
        memory rule's own ``graph_capture_blocker``)."""
        memory = self.memory
        if not memory.constant_state:
            return f"CUDA graphs need a constant-size memory ({memory.name} grows every frame)"
        if memory.graph_capture_blocker:
            return f"CUDA graphs with the {memory.name} memory: {memory.graph_capture_blocker}"
        return ""

    def state_growth_bytes(self, batch: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes the state grows by per frame (B, 1, height, width): 0 for a constant-size memory; the growing
        rule (softmax) appends the frame's keys (Ck) and values (Cv) of every pixel of the stride-16 grid,
        per object, in ``dtype`` promoted to at least fp32."""
        if self.memory.constant_state:
            return 0
        pixels = (height // STRIDE) * (width // STRIDE)
        cfg = self.config
        return batch * self.num_objects * pixels * (cfg.key_dim + cfg.value_dim) * state_element_bytes(dtype)

    # ------------------------------------------------------------------ stages
    def encode_image(self, image: Tensor) -> ImageFeatures:
        """Gray frames (B, 1, H, W) in [0, 1] -> :class:`ImageFeatures` (keys, pixel features, skips)."""
        image = (image.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std
        f4, f8, f16 = self.key_encoder(image)
        pix = self.pix_proj(f16)
        key_feat = self.key_proj(pix)
        if self.kpff is not None:
            key_feat = self.kpff(key_feat, pix)
        # softmax over channels, except for rules that take the raw projection (softmax attention)
        key = key_feat if self.memory.raw_keys else torch.softmax(key_feat, dim=1)
        return ImageFeatures(image=image, f4=f4, f8=f8, pix=pix, key=key)

    def encode_value(self, feats: ImageFeatures, sensory: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Values of one frame from its image and object masks (B, O, H, W).

        Returns values (B, O, Cv, h, w), the new sensory state (B, O, Cs, h, w) and this frame's object
        summaries (B, O, Q, E + 1) (None without the object transformer).
        """
        value, sensory = self.value_encoder(feats.image, feats.pix, sensory, masks)
        summary = self.object_summarizer(masks, value) if self.object_summarizer is not None else None
        return value, sensory, summary

    def read(self, memory_state: dict[str, Tensor], key: Tensor) -> Tensor:
        """Memory readout for query keys (B, Ck, h, w) -> (B, O, Cv, h, w); the keys are shared by objects."""
        b, _, h, w = key.shape
        out = self.memory.read(memory_state, self._flat_keys(key))  # (B*O, N, Cv)
        return out.transpose(1, 2).reshape(b, self.num_objects, -1, h, w)

    def write(self, memory_state: dict[str, Tensor], key: Tensor, value: Tensor) -> dict[str, Tensor]:
        """Write keys (B, Ck, h, w) and values (B, O, Cv, h, w) into the memory; returns the new state."""
        b, _, h, w = key.shape
        v = value.flatten(3).transpose(2, 3).reshape(b * value.shape[1], h * w, -1)
        return self.memory.write(memory_state, self._flat_keys(key), v)

    def _scale_keys(self, keys: Tensor) -> Tensor:
        """Keys (B, N, Ck) scaled for the summing rules, as ``config.key_scale`` says.

        ``sqrt-pixels``: by 1/sqrt(N). Softmax keys have row norm <= 1, so after the scaling
        ||K^T K|| <= 1: the delta erase (I - beta K^T K) cannot flip or blow up the state however many
        pixels a frame has, and the readout Q S averages over pixels instead of growing with N.
        ``frobenius``: by 1/||K||_F of each sequence's frame, so ||K^T K|| <= ||K||_F^2 = 1 as well, with a
        scale set by the keys themselves (between 1/sqrt(N) and sqrt(Ck/N) for softmax keys).
        ``none``: the equations as printed. softmax (attention-normalised) and gka (ridge solve with
        lambda relative to ||H||, invariant to this scale) are left unscaled.
        """
        if self.config.key_scale == "none" or not self.memory.sums_over_pixels:
            return keys
        if self.config.key_scale == "frobenius":
            norm = keys.float().pow(2).sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-6)
            return keys / norm.to(keys.dtype)
        return keys * keys.shape[1] ** -0.5

    def _flat_keys(self, key: Tensor) -> Tensor:
        """Keys (B, Ck, h, w) -> scaled per-object memory keys (B * O, h * w, Ck)."""
        b, ck, h, w = key.shape
        o = self.num_objects
        k = key.flatten(2).transpose(1, 2).unsqueeze(1).expand(b, o, h * w, ck).reshape(b * o, h * w, ck)
        return self._scale_keys(k)

    def write_read(self, memory_state: dict[str, Tensor], key: Tensor, value: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The paper's memory step: write keys (B, Ck, h, w) and values (B, O, Cv, h, w), then read the new
        state with the same keys, in one fused call. Returns (readout (B, O, Cv, h, w), new state)."""
        b, _, h, w = key.shape
        o = value.shape[1]
        k = self._flat_keys(key)
        v = value.flatten(3).transpose(2, 3).reshape(b * o, h * w, -1)
        out, new_state = self.memory.write_read(memory_state, k, v, k)
        return out.transpose(1, 2).reshape(b, o, -1, h, w), new_state

    def segment(self, feats: ImageFeatures, readout: Tensor, sensory: Tensor, last_mask: Tensor,
                obj_memory: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Decode one frame.

        readout (B, O, Cv, h, w), sensory (B, O, Cs, h, w), last_mask (B, O, h, w), obj_memory
        (B, O, Q, E + 1) -> logits (B, O + 1, H, W), probabilities (B, O + 1, H, W) (softmax of the
        logits) and the decoder-updated sensory state.
        """
        fused = self.pixel_fuser(feats.pix, readout, sensory, last_mask)
        if self.object_transformer is not None:
            assert obj_memory is not None
            fused = self.object_transformer(fused, obj_memory)
        obj_logits, sensory = self.decoder(fused, feats.f8, feats.f4, sensory)  # (B, O, H/4, W/4)
        # the aggregation clamps probabilities at 1e-7: at least fp32, also under autocast
        with torch.autocast(device_type=obj_logits.device.type, enabled=False):
            obj_logits = obj_logits.to(torch.promote_types(obj_logits.dtype, torch.float32))
            logits = soft_aggregate(torch.sigmoid(obj_logits))
            logits = F.interpolate(logits, size=feats.image.shape[-2:], mode="bilinear", align_corners=False)
            prob = torch.softmax(logits, dim=1)
        return logits, prob, sensory

    # ------------------------------------------------------------------ recurrence
    def init_state(self, batch: int, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> RecurrentState:
        """The state before the first frame: empty memory, zero sensory state, zero previous mask.

        ``grid`` is the stride-16 grid (h, w) of frames (B, 1, 16 h, 16 w). The state is kept in at least
        fp32 (``dtype`` is promoted), also when the frames run under autocast.
        """
        o, (h, w) = self.num_objects, grid
        dtype = torch.promote_types(dtype, torch.float32)
        obj_memory = None
        if self.object_summarizer is not None:
            obj_memory = torch.zeros(batch, o, self.config.num_queries, self.config.embed_dim + 1,
                                     device=device, dtype=dtype)
        return RecurrentState(
            memory=self.memory.init_state(batch * o, device, dtype),
            sensory=torch.zeros(batch, o, self.config.sensory_dim, h, w, device=device, dtype=dtype),
            prev_mask=torch.zeros(batch, o, h * STRIDE, w * STRIDE, device=device, dtype=dtype),
            obj_memory=obj_memory,
        )

    def advance(self, state: RecurrentState, feats: ImageFeatures, prompt: Tensor | None = None,
                update_memory: bool = True) -> tuple[Tensor, RecurrentState]:
        """One frame of the recurrence in ``config.step_order`` (see the module docstring).

        ``prompt`` (B, O, H, W) replaces the segmentation by a given mask (first-frame prompt).
        ``update_memory=False`` marks the clip's last frame: the read-first order then skips the value
        encoding and the write, which only later frames would use (the paper order writes before it reads,
        so it always writes). Returns the frame's logits (B, O + 1, H, W) and the next state.
        """
        if self.config.step_order == "read-first":
            return self._advance_read_first(state, feats, prompt, update_memory)
        masks_in = state.prev_mask if prompt is None else prompt
        value, sensory, obj_memory = self._encode_and_summarise(state, feats, state.sensory, masks_in)
        readout, memory = self.write_read(state.memory, feats.key, value)
        if prompt is None:
            logits, prob, sensory = self.segment(feats, readout, sensory, self._grid_mask(state.prev_mask, feats),
                                                 obj_memory)
            masks = prob[:, 1:]
        else:
            logits, masks = self._prompt_logits(prompt), prompt
        return logits, self._next_state(state, memory, sensory, masks, obj_memory)

    def _advance_read_first(self, state: RecurrentState, feats: ImageFeatures, prompt: Tensor | None,
                            update_memory: bool) -> tuple[Tensor, RecurrentState]:
        """gdkvm 0.1's order: read S_{t-1}, segment, encode the value from this frame's mask, write."""
        sensory = state.sensory
        if prompt is None:
            readout = self.read(state.memory, feats.key)
            logits, prob, sensory = self.segment(feats, readout, sensory, self._grid_mask(state.prev_mask, feats),
                                                 state.obj_memory)
            masks = prob[:, 1:]
        else:
            logits, masks = self._prompt_logits(prompt), prompt
        if not update_memory:
            return logits, replace(state, sensory=sensory.to(state.sensory.dtype), frames=state.frames + 1)
        value, sensory, obj_memory = self._encode_and_summarise(state, feats, sensory, masks)
        return logits, self._next_state(state, self.write(state.memory, feats.key, value), sensory, masks,
                                        obj_memory)

    def _encode_and_summarise(self, state: RecurrentState, feats: ImageFeatures, sensory: Tensor,
                              masks: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Values (B, O, Cv, h, w) from the frame and ``masks`` (B, O, H, W), the updated sensory state, and
        the object memory with this frame's summaries added (None without the object transformer)."""
        value, sensory, summary = self.encode_value(feats, sensory.to(feats.pix.dtype), masks.to(feats.pix.dtype))
        obj_memory = state.obj_memory
        if summary is not None and obj_memory is not None:
            obj_memory = obj_memory + summary.to(obj_memory.dtype)
        return value, sensory, obj_memory

    @staticmethod
    def _grid_mask(prev_mask: Tensor, feats: ImageFeatures) -> Tensor:
        """The previous masks (B, O, H, W) averaged onto the stride-16 grid (B, O, h, w)."""
        return F.interpolate(prev_mask, size=feats.key.shape[-2:], mode="area").to(feats.pix.dtype)

    @staticmethod
    def _prompt_logits(prompt: Tensor) -> Tensor:
        """A prompt (B, O, H, W) as logits (B, O + 1, H, W), in at least fp32."""
        return soft_aggregate(prompt.to(torch.promote_types(prompt.dtype, torch.float32)))

    @staticmethod
    def _next_state(state: RecurrentState, memory: dict[str, Tensor], sensory: Tensor, masks: Tensor,
                    obj_memory: Tensor | None) -> RecurrentState:
        """The state after one frame; carried tensors keep their dtypes (autocast may return half precision)."""
        return RecurrentState(
            memory=memory,
            sensory=sensory.to(state.sensory.dtype),
            prev_mask=masks.to(state.prev_mask.dtype),
            obj_memory=obj_memory,
            frames=state.frames + 1,
        )

    def forward(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """Clip wrapper: clip (B, T, 1, H, W) -> logits (B, T, O + 1, H, W).

        All T frames go through the key encoder in one batched call; then the recurrence runs frame by
        frame. ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map prompts frame 0.
        """
        return run_clip(self, clip, first_frame_mask,
                        lambda b, h, w, device, dtype: self.init_state(b, (h // STRIDE, w // STRIDE), device, dtype))

    def stepper(self) -> Stepper:
        """A fresh streaming stepper over this model (see :class:`Stepper`)."""
        return Stepper(self)

    def state_bytes(self, state: RecurrentState) -> int:
        """Bytes held by a recurrent state (memory rule state + sensory + previous mask + object memory)."""
        extra = [state.sensory, state.prev_mask] + ([state.obj_memory] if state.obj_memory is not None else [])
        return self.memory.state_bytes(state.memory) + sum(x.numel() * x.element_size() for x in extra)


class Stepper:
    """Streaming inference: ``step(frame) -> logits`` one frame at a time, carrying a :class:`RecurrentState`.

    The state's size does not grow with the number of frames for every memory rule except ``softmax``.
    Gradient mode is left to the caller (wrap in ``torch.no_grad()`` for inference).
    """

    def __init__(self, model: GDKVM):
        self.model = model
        self.state: RecurrentState | None = None
        self._size: tuple[int, int, int] | None = None

    def reset(self) -> None:
        """Forget everything: the next frame is a first frame."""
        self.state = None
        self._size = None

    @property
    def frames(self) -> int:
        """Frames processed since the last reset."""
        return 0 if self.state is None else self.state.frames

    def step(self, frame: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """frame (B, 1, H, W) float in [0, 1] -> logits (B, O + 1, H, W) (channel 0 = background).

        ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map, only on the first frame.
        """
        check_frame(frame)
        model = self.model
        dtype = model.pixel_mean.dtype
        frame = frame.to(device=model.pixel_mean.device, dtype=dtype)
        b, _, h, w = frame.shape
        if self.state is not None and self._size != (b, h, w):
            raise GdkvmError(f"frame: expected shape ({self._size[0]}, 1, {self._size[1]}, {self._size[2]}) "
                             f"like the previous frames, got {tuple(frame.shape)}")
        if first_frame_mask is not None and self.state is not None:
            raise GdkvmError("first_frame_mask: only allowed on the first frame (call reset() first)")
        prompt = None
        if first_frame_mask is not None:
            prompt = prompt_masks(first_frame_mask, b, model.num_objects, (h, w), dtype).to(frame.device)
        feats = model.encode_image(frame)
        if self.state is None:
            self.state = self._new_state(feats, b, h, w, frame.device)
            self._size = (b, h, w)
        logits, self.state = model.advance(self.state, feats, prompt)
        return logits

    def _new_state(self, feats: ImageFeatures, batch: int, height: int, width: int, device: torch.device):
        """The empty recurrent state for a first frame (models with another state layout override this)."""
        return self.model.init_state(batch, (height // STRIDE, width // STRIDE), device, feats.key.dtype)

    def state_bytes(self) -> int:
        """Bytes of the carried state (0 before the first frame)."""
        return 0 if self.state is None else self.model.state_bytes(self.state)
