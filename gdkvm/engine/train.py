"""The training loop: paper recipe, exact resume, DDP, periodic validation and checkpoints.

One iteration draws the global batch of clips (a pure function of (seed, iteration), see
:mod:`gdkvm.engine.sampling`), runs the clip wrapper ``model(clip) -> logits (B, T, O+1, H, W)``,
takes CE + soft Dice over the supervised frames, clips the global gradient norm and steps AdamW.
A model declaring ``has_aux_outputs`` (the ``release`` variants) runs ``forward_with_aux`` instead and its
auxiliary loss (:func:`gdkvm.models.release_losses.release_aux_loss`, ``aux_total``) is added to the
loss and logged as ``aux_total`` / ``aux_sensory_ce`` / ``aux_sensory_dice`` / ``aux_query_ce`` /
``aux_query_dice``.
Every ``val_every`` iterations rank 0 streams the validation split through the model's stepper and
keeps ``checkpoint_best``; every ``ckpt_every`` iterations (and at the end) it writes
``checkpoint_last`` and ``trainer_state.pt``. A NaN/inf loss or gradient stops the run with a
one-line error before the weights are touched, so the last checkpoint stays good for ``--resume``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from gdkvm import __version__
from gdkvm.config import load_yaml, save_yaml, to_dict
from gdkvm.engine import run_files
from gdkvm.engine.checkpoint import (
    RunPaths,
    capture_rng_state,
    load_trainer_state,
    restore_rng_state,
    save_trainer_state,
)
from gdkvm.engine.config import RESUME_FREE_FIELDS, TrainConfig, load_train_config
from gdkvm.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    env_dist_info,
    init_distributed,
    local_batch_size,
    resolve_device,
    shutdown_distributed,
)
from gdkvm.engine.inference import autocast_context, mean_frame_dice, predict_clips
from gdkvm.engine.losses import segmentation_loss, supervised_frames
from gdkvm.engine.sampling import CountedClips, RankSampler
from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.utils.atomic import atomic_write_text

Progress = Callable[..., None]
Log = Callable[[str], None]


class NonFiniteLossError(GdkvmError):
    """The loss or the gradient norm became NaN/inf; nothing was written for that step."""


@dataclass
class TrainResult:
    """What a call to :func:`train_run` did."""

    run_dir: Path
    start_iteration: int
    iteration: int
    finished: bool
    last_loss: float
    best_dice: float | None
    best_iteration: int | None


# ------------------------------------------------------------------------------ run folder setup


def run_dir_for(cfg: TrainConfig, out: str | Path) -> Path:
    """``<out>/<run name>``."""
    return Path(out) / cfg.run_name


def resume_config(saved: TrainConfig, given: Mapping[str, Any], where: Path, *, check: bool = True) -> TrainConfig:
    """The one place a resumed run's saved config meets the options given again: the saved config with them.

    ``given`` maps TrainConfig fields to values, None meaning not given (the saved value stays); ``name``
    (the run's identity) is never changed. A field in ``RESUME_FREE_FIELDS`` takes the given value. With
    ``check`` any other given value that differs from the saved one would silently break the run, so it is
    a one-line ConfigError naming the field; without it (no checkpoint yet, nothing to break) it is taken.
    """
    old_values = saved.to_dict()
    changed = {}
    for key, value in given.items():
        if value is None or key == "name":
            continue
        new = saved.with_overrides(**{key: value}).to_dict()[key]
        if new == old_values[key]:
            continue
        if check and key not in RESUME_FREE_FIELDS:
            raise ConfigError(
                f"{where}: cannot resume with {key}={new!r}; the run was started with {key}={old_values[key]!r}"
            )
        changed[key] = value
    return saved.with_overrides(**changed)


def resolve_resume_config(saved: TrainConfig, given: TrainConfig, where: Path) -> TrainConfig:
    """The config to continue a run with: :func:`resume_config` with the fields in which ``given`` differs
    from ``saved`` as the options given (checked)."""
    old_values = saved.to_dict()
    differ = {key: getattr(given, key) for key, value in given.to_dict().items() if value != old_values[key]}
    return resume_config(saved, differ, where)


def effective_train_config(identity: TrainConfig, given: Mapping[str, Any], out: str | Path, *,
                           resume: bool = False) -> TrainConfig:
    """The config one ``gdkvm train`` call runs with (so that it can be shown before the work starts).

    ``identity`` holds the data, variant, preset and name; ``given`` the options of this call (None: not
    given). A fresh run puts them over the recipe's defaults; with ``resume`` and an existing
    ``config.yaml`` they go over the saved config through :func:`resume_config` (unchecked here:
    :func:`train_run` checks them once it knows whether the run has a checkpoint).
    """
    config_file = run_dir_for(identity, out) / run_files.CONFIG_FILE
    if resume and config_file.is_file():
        saved = load_train_config(config_file)
        return resume_config(saved, {"data": identity.data, **given}, config_file, check=False)
    return identity.with_overrides(**given)


def _check_store(data: Path, info: DistInfo) -> None:
    """Verify the prepared store's hashes on rank 0 and share the verdict with every rank."""
    message = None
    if info.is_main:
        from gdkvm.data.store import verify_store

        try:
            verify_store(data)
        except GdkvmError as e:
            message = str(e)
    message = broadcast_object(message)
    if message is not None:
        raise DataError(None, message)


def _store_size(data: Path) -> int | None:
    """The frame size (px) the prepared store at ``data`` was made at, or None when it does not say."""
    from gdkvm.data.store import read_store_meta

    try:
        size = read_store_meta(data).get("options", {}).get("size")
    except GdkvmError:
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _open_splits(cfg: TrainConfig) -> tuple[Any, Any | None]:
    from gdkvm.data.store import open_store

    train_split = open_store(cfg.data, "train")
    if len(train_split) == 0:
        raise DataError(train_split.path, "training split holds no clips")
    val_split = None
    if (Path(cfg.data) / cfg.val_split).is_dir():
        val_split = open_store(cfg.data, cfg.val_split)
        if len(val_split) == 0:
            val_split = None
    return train_split, val_split


def build_training_model(cfg: TrainConfig) -> nn.Module:
    """The run's model, initialised from ``cfg.seed`` (identical on every rank)."""
    from gdkvm.models.registry import build_model

    torch.manual_seed(cfg.seed)
    return build_model(cfg.variant, cfg.preset, **cfg.model_overrides)


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return bool(getattr(param, "_no_weight_decay", False)) or param.ndim <= 1


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; biases, norms and parameters flagged ``_no_weight_decay`` get no weight decay."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if _no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_at(cfg: TrainConfig, iteration: int) -> float:
    """Learning rate for step ``iteration`` (0-based): linear warm-up, then constant or cosine to 0."""
    if cfg.warmup and iteration < cfg.warmup:
        return cfg.lr * (iteration + 1) / cfg.warmup
    if cfg.schedule == "cosine":
        span = max(cfg.iterations - cfg.warmup, 1)
        progress = min(max(iteration - cfg.warmup, 0) / span, 1.0)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


# ------------------------------------------------------------------------------ auxiliary losses

#: The auxiliary loss terms logged for models with ``forward_with_aux`` (``aux_total`` is in the loss).
AUX_TERMS = ("aux_total", "aux_sensory_ce", "aux_sensory_dice", "aux_query_ce", "aux_query_dice")


class _AuxForward(nn.Module):
    """``forward(clip) = model.forward_with_aux(clip)``, so that DDP wraps (and syncs) the aux forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> Any:
        return self.model.forward_with_aux(clip)


def _aux_loss_terms(aux: dict[str, torch.Tensor], masks: torch.Tensor, labeled: torch.Tensor) -> dict[str, torch.Tensor]:
    """The release's auxiliary loss (:func:`gdkvm.models.release_losses.release_aux_loss`, float32) over
    the clips whose first and last frames carry a reference mask (an unlabeled frame's mask is all zeros,
    which the aux loss would take for background). Zero, still attached to the graph, when none does."""
    from gdkvm.models.release_losses import release_aux_loss

    aux = {k: v.float() for k, v in aux.items()}
    keep = labeled[:, 0].bool() & labeled[:, -1].bool()
    if not bool(keep.any()):
        zero = sum(v.sum() for v in aux.values()) * 0.0
        return {k: zero for k in AUX_TERMS}
    terms = release_aux_loss({k: v[keep] for k, v in aux.items()}, masks[keep])
    zero = terms["aux_total"].new_zeros(())  # a term the model's aux outputs do not produce
    return {k: terms.get(k, zero) for k in AUX_TERMS}


# ------------------------------------------------------------------------------ gate statistics


def _tensor_summary(x: torch.Tensor, bins: int = 16) -> dict[str, Any]:
    x = x.detach().float().flatten().cpu()
    x = x[torch.isfinite(x)]
    if x.numel() == 0:
        return {"n": 0}
    lo, hi = float(x.min()), float(x.max())
    qs = torch.quantile(x, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])) if x.numel() > 1 else x.repeat(5)
    hist = torch.histc(x, bins=bins, min=lo, max=hi if hi > lo else lo + 1e-12)
    return {
        "n": int(x.numel()),
        "mean": float(x.mean()),
        "std": float(x.std()) if x.numel() > 1 else 0.0,
        "min": lo,
        "max": hi,
        "q05": float(qs[0]),
        "q25": float(qs[1]),
        "q50": float(qs[2]),
        "q75": float(qs[3]),
        "q95": float(qs[4]),
        "hist": [int(c) for c in hist.tolist()],
    }


def gate_statistics(model: nn.Module) -> dict[str, Any]:
    """alpha/beta of the last memory write (``MemoryRule.last_gate_stats``) and their gradients.

    Returns ``{"alpha": summary, "beta": summary, "alpha_grad": ..., "beta_grad": ...}`` with mean,
    std, min, max, quantiles and a 16-bin histogram over [min, max] (the paper's Fig. 9 material);
    gradients are those of the parameters producing each gate. Empty for rules without gates.
    """
    from gdkvm.models.memory import MemoryRule

    out: dict[str, Any] = {}
    rules = [(n, m) for n, m in model.named_modules() if isinstance(m, MemoryRule)]
    for name, rule in rules:
        prefix = "" if len(rules) == 1 else f"{name}."
        for label, value in rule.last_gate_stats.items():
            if isinstance(value, torch.Tensor) and value.numel() > 1:
                out[f"{prefix}{label}"] = _tensor_summary(value)
        for label, params in rule.gate_parameters().items():
            grads = [p.grad.flatten() for p in params if p.grad is not None]
            if grads:
                summary = _tensor_summary(torch.cat(grads))
                summary["norm"] = float(torch.cat(grads).float().norm())
                out[f"{prefix}{label}_grad"] = summary
    return out


# ------------------------------------------------------------------------------ metrics log


def _read_metric_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(path: Path, iteration: int) -> None:
    """Keep only records up to ``iteration`` (steps after the last checkpoint are redone on resume).

    A torn last line (the process was killed mid-write) is dropped too. Rewritten atomically.
    """
    kept = []
    for line in _read_metric_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if int(record.get("iteration", 0)) <= iteration:
            kept.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def last_logged_loss(path: Path, iteration: int) -> float:
    """The loss of the last finite ``train`` record at or before ``iteration`` in metrics.jsonl (NaN if none)."""
    if not path.is_file():
        return float("nan")
    last = float("nan")
    for line in _read_metric_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        loss = record.get("loss")
        if (record.get("kind") == "train" and int(record.get("iteration", 0)) <= iteration
                and isinstance(loss, (int, float)) and math.isfinite(loss)):
            last = float(loss)
    return last


class MetricsLog:
    """Append-only JSON-lines log of the run (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled
        self._file = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------------------ the trainer


class Trainer:
    """Holds the model, optimizer and data of one run and runs its iterations."""

    def __init__(self, cfg: TrainConfig, paths: RunPaths, info: DistInfo, device: torch.device,
                 progress: Progress | None, log: Log | None):
        self.cfg = cfg
        self.paths = paths
        self.info = info
        self.device = device
        self.progress = progress if info.is_main else None
        self.log = log if (log is not None and info.is_main) else (lambda _msg: None)
        self.local_batch = local_batch_size(cfg.batch_size, info.world_size)
        self.iteration = 0
        self.best_dice: float | None = None
        self.best_iteration: int | None = None
        self.last_loss = float("nan")
        #: ImageNet files loaded at the start (trunk, module, arch, path, sha256); None: not loaded here
        self.backbone_records: list[dict[str, str]] | None = None

        self.train_split, self.val_split = _open_splits(cfg)
        self.model = build_training_model(cfg)
        self.model.to(device)
        if info.enabled and device.type == "cuda" and not self.model.freezes_batchnorm:
            # one set of batch statistics over the global batch (frozen BN needs no synchronisation)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = build_optimizer(self.model, cfg)
        # models with auxiliary heads (the release model) train through forward_with_aux + their aux loss
        self.with_aux = self.model.has_aux_outputs

    # -- state ---------------------------------------------------------------------------------
    def load_backbone(self) -> None:
        """Load ``cfg.backbone_weights`` into the encoders; ``self.backbone_records`` says what went where."""
        if self.cfg.backbone_weights:
            from gdkvm.models.weights import load_backbone_weights

            self.backbone_records = load_backbone_weights(self.model, self.cfg.backbone_weights)
            for r in self.backbone_records:
                self.log(f"loaded {r['module']} ({r['arch']}) <- {Path(r['path']).name} "
                         f"(sha256 {r['sha256'][:12]})")

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": self.cfg.schedule, "warmup": self.cfg.warmup,
                          "last_lr": lr_at(self.cfg, max(self.iteration - 1, 0))},
            "rng": capture_rng_state(),
            "best_dice": self.best_dice,
            "best_iteration": self.best_iteration,
            "variant": self.cfg.variant,
            "preset": self.cfg.preset,
            "world_size": self.info.world_size,
            "gdkvm_version": __version__,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        from gdkvm.models.weights import load_state_dict_checked

        where = self.paths.trainer_state
        for key in ("variant", "preset"):
            if str(state.get(key)) != str(getattr(self.cfg, key)):
                raise DataError(where, f"trainer state is for {key} '{state.get(key)}', "
                                f"but the run is {key} '{getattr(self.cfg, key)}'")
        load_state_dict_checked(self.model, state["model"], where)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise DataError(where, f"optimizer state does not fit this model ({e})") from None
        restore_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.best_dice = None if state.get("best_dice") is None else float(state["best_dice"])
        self.best_iteration = None if state.get("best_iteration") is None else int(state["best_iteration"])

    def _checkpoint_metadata(self, **extra: Any) -> dict[str, Any]:
        meta = {"iteration": self.iteration, "preset": self.cfg.preset, "dataset": self.cfg.dataset_name,
                "train_config": self.cfg.to_dict(), **extra}
        size = _store_size(self.cfg.data)
        if size is not None:
            meta["input_size"] = size  # predict reads the training frame size from here, not the data path
        return meta

    def save_checkpoint(self) -> None:
        """checkpoint_last.safetensors, then trainer_state.pt (each atomic; rank 0 only).

        Weights holding NaN/inf are never written: the last finite checkpoint stays for ``--resume``.
        """
        bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not bool(v.isfinite().all())]
        if bad:
            raise NonFiniteLossError(
                f"iteration {self.iteration}: weights hold NaN/inf ({bad[0]}{' +more' if len(bad) > 1 else ''}); "
                f"not saved, the last finite checkpoint is kept in {self.paths.root} "
                f"(resume with --resume, e.g. with a lower --lr)")
        if self.info.is_main:
            from gdkvm.models.weights import save_checkpoint

            save_checkpoint(self.model, self.paths.last, self._checkpoint_metadata())
            save_trainer_state(self.paths.trainer_state, self.state_dict())
        barrier()

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean Dice on the validation split (rank 0 streams it; RNG state untouched)."""
        dice = None
        if self.info.is_main and self.val_split is not None:
            rng = capture_rng_state()
            n = len(self.val_split)
            if self.cfg.max_val_videos:
                n = min(n, self.cfg.max_val_videos)
            pred = predict_clips(self.model, self.val_split.images[:n], self.device, self.cfg.amp, threshold=0.5)
            dice = mean_frame_dice(pred, self.val_split.masks[:n], self.val_split.labeled[:n])
            restore_rng_state(rng)
        dice = broadcast_object(dice)
        barrier()
        return dice

    # -- one step ------------------------------------------------------------------------------
    def _loader(self, start: int, stop: int) -> DataLoader:
        from gdkvm.data.augment import augment_profile
        from gdkvm.data.dataset import ClipDataset

        clips = ClipDataset(self.train_split, augment=self.cfg.augment, seed=self.cfg.seed,
                            config=augment_profile(self.cfg.augment_profile))
        sampler = RankSampler(start, stop, self.cfg.batch_size, self.info.rank, self.info.world_size)
        return DataLoader(
            CountedClips(clips, self.cfg.seed),
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, loss, backward, clip, AdamW step. Returns the reduced loss terms of the step."""
        cfg = self.cfg
        images = batch["images"].to(self.device, non_blocking=True)
        masks = batch["masks"].to(self.device, non_blocking=True)
        frames = supervised_frames(batch["labeled"], cfg.supervision).to(self.device)
        lr = lr_at(cfg, self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        aux_terms: dict[str, torch.Tensor] = {}
        with autocast_context(self.device, cfg.amp):
            if self.with_aux:
                logits, aux = model(images)
            else:
                logits = model(images)
        if self.with_aux:
            aux_terms = _aux_loss_terms(aux, masks, batch["labeled"].to(self.device))
        sums = segmentation_loss(logits, masks, frames, cfg.ce_weight, cfg.dice_weight)
        parts = [sums.ce.detach(), sums.dice.detach(), sums.frames]
        parts += [aux_terms[k].detach() for k in AUX_TERMS if aux_terms]
        reduced = all_reduce_sum(torch.stack([p.float() for p in parts]))
        ce_sum, dice_sum, n_frames = (float(v) for v in reduced[:3])
        aux_mean = {k: float(v) / self.info.world_size for k, v in zip(AUX_TERMS, reduced[3:], strict=False)}
        denominator = max(n_frames, 1.0)
        loss_value = (cfg.ce_weight * ce_sum + cfg.dice_weight * dice_sum) / denominator
        loss_value += aux_mean.get("aux_total", 0.0)
        where = f"iteration {self.iteration + 1}"
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"{where}: loss is {loss_value} (NaN/inf); stopped before updating the weights, last good "
                f"checkpoint kept in {self.paths.root} (resume with --resume, e.g. with a lower --lr)"
            )
        # DDP averages gradients over ranks: scaling by world_size makes the result the gradient of
        # the global mean over every supervised frame of the global batch.
        loss = sums.total(torch.tensor(denominator)) * self.info.world_size
        if aux_terms:
            # each rank's aux term is a mean over its own clips; DDP's gradient average makes it the global mean
            loss = loss + aux_terms["aux_total"]
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(
                f"{where}: gradient norm is {grad_norm}; stopped before updating the weights, last good "
                f"checkpoint kept in {self.paths.root} (resume with --resume, e.g. with a lower --lr)"
            )
        gates = gate_statistics(self.model) if (cfg.log_gates and self.info.is_main) else {}
        self.optimizer.step()
        return {
            "loss": loss_value,
            "ce": ce_sum / denominator,
            "dice_loss": dice_sum / denominator,
            **aux_mean,
            "frames": int(n_frames),
            "lr": lr,
            "grad_norm": grad_norm,
            "gates": gates,
        }

    # -- loop ----------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> TrainResult:
        cfg = self.cfg
        start = self.iteration
        stop = cfg.iterations if max_steps is None else min(cfg.iterations, start + max_steps)
        model: nn.Module = _AuxForward(self.model) if self.with_aux else self.model
        if self.info.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.model.train()
        metrics = MetricsLog(self.paths.metrics, self.info.is_main)
        t_start = time.perf_counter()
        try:
            if self.progress:
                self.progress(start, cfg.iterations, info="")
            tick = time.perf_counter()
            for batch in self._loader(start, stop):
                record = self.step(model, batch)
                self.iteration += 1
                now = time.perf_counter()
                record["clips_per_s"] = cfg.batch_size / max(now - tick, 1e-9)
                tick = now
                self.last_loss = record["loss"]
                metrics.write({"kind": "train", "iteration": self.iteration, **record})
                if self.progress:
                    self.progress(self.iteration, cfg.iterations,
                                  info=f"loss {record['loss']:.4f}  {record['clips_per_s']:.1f} clips/s")
                at_end = self.iteration == stop
                if self.iteration % cfg.val_every == 0 or self.iteration == cfg.iterations:
                    self._validate_and_keep_best(metrics)
                if self.iteration % cfg.ckpt_every == 0 or at_end:
                    self.save_checkpoint()
                    metrics.write({"kind": "checkpoint", "iteration": self.iteration})
        finally:
            metrics.close()
        finished = self.iteration >= cfg.iterations
        already_done = self.iteration == start and self.paths.done.is_file()  # a resumed, finished run
        if finished and self.info.is_main and not already_done:
            last_loss = self.last_loss if math.isfinite(self.last_loss) else None
            done = {"iteration": self.iteration, "best_dice": self.best_dice, "best_iteration": self.best_iteration,
                    "last_loss": last_loss, "elapsed_s": time.perf_counter() - t_start}
            atomic_write_text(self.paths.done, json.dumps(done, indent=2) + "\n")
        return TrainResult(self.paths.root, start, self.iteration, finished, self.last_loss,
                           self.best_dice, self.best_iteration)

    def _validate_and_keep_best(self, metrics: MetricsLog) -> None:
        dice = self.validate()
        if dice is None:
            return
        improved = self.best_dice is None or dice > self.best_dice
        if improved:
            self.best_dice, self.best_iteration = dice, self.iteration
            if self.info.is_main:
                from gdkvm.models.weights import save_checkpoint

                save_checkpoint(self.model, self.paths.best, self._checkpoint_metadata(val_dice=dice))
        metrics.write({"kind": "val", "iteration": self.iteration, "split": self.cfg.val_split,
                       "dice": dice, "best_dice": self.best_dice, "best_iteration": self.best_iteration})
        self.log(f"iteration {self.iteration}: val Dice {dice:.4f} (best {self.best_dice:.4f} "
                 f"at {self.best_iteration})")
        barrier()


def _write_run_config(cfg: TrainConfig, paths: RunPaths, model: nn.Module, info: DistInfo,
                      backbone: list[dict[str, str]] | None = None) -> None:
    """Write config.yaml; ``backbone`` (the ImageNet files loaded at the start, with sha256) goes in its
    ``backbone_weights`` section. None (a resumed run) keeps the section the first start wrote."""
    from gdkvm.models.weights import code_version

    if backbone is None and cfg.backbone_weights and paths.config.is_file():
        try:
            old = load_yaml(paths.config)
        except GdkvmError:
            old = None
        backbone = old.get("backbone_weights") if isinstance(old, dict) else None
    data = {
        "train": cfg.to_dict(),
        "model": to_dict(model.config),
        "world_size": info.world_size,
        "versions": {"gdkvm": __version__, "code": code_version(), "torch": str(torch.__version__)},
    }
    if backbone:
        data["backbone_weights"] = backbone
    from gdkvm.data.locate import store_record

    data["store"] = store_record(cfg.data, paths.root)  # evaluate / report find the store again by it
    save_yaml(paths.config, data)


def _setup(cfg: TrainConfig, out: Path, resume: bool, info: DistInfo) -> tuple[TrainConfig, RunPaths, dict | None]:
    """Decide between a fresh run and a resumption; returns the effective config and trainer state."""
    paths = RunPaths(run_dir_for(cfg, out))
    # A folder without a checkpoint (e.g. a first start that failed on a bad --backbone-weights) holds
    # no training yet: a plain retry starts it afresh and --resume may change any option.
    started = paths.trainer_state.exists() or paths.last.exists()
    if not resume:
        if started:
            raise GdkvmError(f"{paths.root}: run folder already exists; pass --resume to continue it "
                             "or --name to start a new run")
        return cfg, paths, None
    if not paths.root.is_dir():
        raise GdkvmError(f"{paths.root}: run folder not found, nothing to resume")
    if not paths.config.is_file():
        raise GdkvmError(f"{paths.config}: missing, so {paths.root} is not a (complete) training run folder")
    if not started:
        # nothing trained yet: the options given now are the run (the CLI has already put them over the
        # saved config.yaml, see effective_train_config), and a changed option conflicts with nothing
        return cfg, paths, {}
    saved = load_train_config(paths.config)
    effective = resolve_resume_config(saved, cfg, paths.config)
    if not paths.trainer_state.exists():
        return effective, paths, {}  # killed between its two first writes: start again from 0
    return effective, paths, load_trainer_state(paths.trainer_state)


def train_run(
    cfg: TrainConfig,
    out: str | Path = "results/runs",
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> TrainResult:
    """Train (or resume) one run into ``<out>/<cfg.run_name>``.

    Args:
        cfg: the recipe; with ``resume`` only fields in ``RESUME_FREE_FIELDS`` may differ from the
            saved ``config.yaml``.
        resume: continue from ``trainer_state.pt`` (exactly: same batches, RNG, optimizer moments).
        max_steps: stop after this many iterations in this call (checkpointing first), e.g. to
            time-slice a long run; ``None`` trains to ``cfg.iterations``.
        progress: ``progress(done, total, info=...)``, called on rank 0 after each iteration.
        log: receives one-line messages (rank 0).
    Works under torchrun: ranks come from the environment and the global batch is split over them.
    """
    cfg = cfg.validate()
    info = env_dist_info()
    device = resolve_device(cfg.device, info)
    owns_group = info.enabled and not torch.distributed.is_initialized()
    info = init_distributed(device)
    try:
        cfg, paths, state = _setup(cfg, Path(out), resume, info)
        # the absolute, resolved store path: evaluate and report may run from another folder
        cfg = replace(cfg, data=str(Path(cfg.data).resolve()))
        _check_store(Path(cfg.data), info)
        trainer = Trainer(cfg, paths, info, device, progress, log)
        if not state:
            trainer.load_backbone()  # before the run folder is written: a bad file leaves nothing behind
        if info.is_main:
            paths.root.mkdir(parents=True, exist_ok=True)
            paths.remove_stale_temporaries()
            _write_run_config(cfg, paths, trainer.model, info, trainer.backbone_records)
        if state:
            trainer.load_state(state)
            if info.is_main:
                truncate_metrics(paths.metrics, trainer.iteration)
                trainer.last_loss = last_logged_loss(paths.metrics, trainer.iteration)
            trainer.log(f"resumed {paths.root} at iteration {trainer.iteration}")
        else:
            if info.is_main and paths.metrics.exists():
                truncate_metrics(paths.metrics, 0)
        barrier()
        try:
            return trainer.run(max_steps)
        except KeyboardInterrupt:
            if info.is_main:  # Ctrl-C still exits 130; say where the run stands
                print(f"interrupted at iteration {trainer.iteration}; resume with --resume ({paths.root})",
                      file=sys.stderr, flush=True)
            raise
    finally:
        if owns_group:
            shutdown_distributed()
