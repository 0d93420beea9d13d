"""Small fixture builders for the report tests: a fake prepared store, run folders and benchmark CSVs.

Files are written directly in the formats the producers write (no training): the store's
``store.json`` + split arrays + manifest (:mod:`gdkvm.data.store`), the run's ``config.yaml``,
``metrics.jsonl`` (with gate statistics from :func:`gdkvm.engine.train._tensor_summary`),
``train_done.json`` and ``eval/<split>/`` tables built by the engine's own table functions
(:mod:`gdkvm.engine.evaluate`), and benchmark CSVs with the bench modules' column schemas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gdkvm.config import save_yaml
from gdkvm.utils.atomic import sha256_file

SIZE = 64
FRAMES = 4


# ------------------------------------------------------------------------------ store


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _clip(rng: np.random.Generator, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) uint8 images and LV masks: an ellipse shrinking from ED (t=0) to ES (t=T-1)."""
    ry0, rx0 = rng.uniform(20, 24), rng.uniform(10, 13)
    shrink = rng.uniform(0.7, 0.85)
    images = np.empty((frames, size, size), np.uint8)
    masks = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        f = 1.0 - (1.0 - shrink) * t / max(frames - 1, 1)
        m = _ellipse(size, size / 2, size / 2, ry0 * f, rx0 * math.sqrt(f))
        masks[t] = m
        images[t] = np.clip(rng.normal(60, 20, (size, size)) + 120 * m, 0, 255).astype(np.uint8)
    return images, masks


def write_store(root: Path, dataset: str = "camus", patients: int = 3, phantom: bool | None = None,
                seed: int = 0) -> Path:
    """A prepared dataset folder ``root/<dataset>`` with a test split (and tiny train/val splits).

    ``phantom``: True/False is recorded as store.json's ``phantom`` flag (as ``gdkvm prepare`` writes
    it); None records no flag (a store.json written before gdkvm recorded provenance).
    Every test clip: patient ``pNNNN``, views 2CH and 4CH (CAMUS) or one A4C clip (EchoNet).
    """
    from gdkvm.data.store import MANIFEST_COLUMNS, SPLIT_FILES, SPLITS

    rng = np.random.default_rng(seed)
    out = root / dataset
    views = ("2CH", "4CH") if dataset == "camus" else ("4CH",)
    counts = {}
    for split in SPLITS:
        n_pat = patients if split == "test" else 1
        images, masks, rows = [], [], []
        for p in range(n_pat):
            for view in views:
                im, ma = _clip(rng, SIZE, FRAMES)
                images.append(im)
                masks.append(ma)
                row = dict.fromkeys(MANIFEST_COLUMNS, "")
                row.update(case_id=f"{split}{p:04d}_{view}", patient=f"{split}{p:04d}", view=view, source=dataset,
                           split=split, frame_indices=" ".join(str(i) for i in range(FRAMES)),
                           n_source_frames=FRAMES, ed_index=0, es_index=FRAMES - 1, phase_first="ED",
                           source_height=SIZE, source_width=SIZE, spacing_row_mm=0.3, spacing_col_mm=0.3,
                           spacing_unit="mm" if dataset == "camus" else "px", ef=55.0, edv=100.0, esv=45.0,
                           image_quality="Good", fps=50.0)
                rows.append(row)
        folder = out / split
        folder.mkdir(parents=True)
        np.save(folder / "images.npy", np.stack(images))
        np.save(folder / "masks.npy", np.stack(masks))
        np.save(folder / "labeled.npy", np.ones((len(images), FRAMES), dtype=bool))
        pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(folder / "manifest.csv", index=False)
        counts[split] = len(images)
    meta = {"format": 1, "dataset": dataset, "source": "CAMUS_public" if dataset == "camus" else "EchoNet-Dynamic",
            "gdkvm_version": "0.1.0", "options": {}, "inputs_sha256": "0" * 64, "counts": counts,
            "bad_cases": [], "untraced": [], "notes": [],
            "files": {f"{s}/{n}": sha256_file(out / s / n) for s in SPLITS for n in SPLIT_FILES}}
    if phantom is not None:
        meta["phantom"] = phantom
    (out / "store.json").write_text(json.dumps(meta, indent=2))
    return out


# ------------------------------------------------------------------------------ runs


def _gates(rng: np.random.Generator, step: int) -> dict:
    from gdkvm.engine.train import _tensor_summary

    alpha = torch.from_numpy(rng.beta(8 + step, 2, size=200)).float()
    beta = torch.from_numpy(rng.beta(2, 5, size=200)).float()
    out = {"alpha": _tensor_summary(alpha), "beta": _tensor_summary(beta)}
    for name in ("alpha_grad", "beta_grad"):
        grad = torch.from_numpy(rng.normal(0, 0.01, size=300)).float()
        out[name] = {**_tensor_summary(grad), "norm": float(grad.norm())}
    return out


def write_metrics(path: Path, iterations: int, rng: np.random.Generator, gates: bool, val_every: int = 2) -> None:
    """``metrics.jsonl`` as the trainer writes it: train, val and checkpoint records."""
    lines = []
    for it in range(1, iterations + 1):
        loss = 1.5 * math.exp(-it / 5) + 0.1 * rng.random()
        record = {"kind": "train", "iteration": it, "loss": loss, "ce": loss / 2, "dice_loss": loss / 2, "frames": 4,
                  "lr": 1e-4, "grad_norm": 1.0 + rng.random(), "gates": _gates(rng, it) if gates else {},
                  "clips_per_s": 3.0}
        lines.append(json.dumps(record))
        if it % val_every == 0 or it == iterations:
            dice = 0.5 + 0.4 * it / iterations
            lines.append(json.dumps({"kind": "val", "iteration": it, "split": "val", "dice": dice, "best_dice": dice,
                                     "best_iteration": it}))
            lines.append(json.dumps({"kind": "checkpoint", "iteration": it}))
    path.write_text("\n".join(lines) + "\n")


def _predictions(masks: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """Ground truth shifted by a few pixels and with some flipped pixels ((N, T, H, W) uint8)."""
    pred = np.zeros_like(masks)
    for n in range(masks.shape[0]):
        shift = int(rng.integers(0, 4)) if quality < 1 else 0
        pred[n] = np.roll(masks[n], shift, axis=-1)
    flips = rng.random(pred.shape) > quality + (1 - quality) * 0.995
    return np.where(flips, 1 - pred, pred).astype(np.uint8)


def write_eval(run_dir: Path, store_dir: Path, split: str = "test", mode: str = "clean", seed: int = 0,
               quality: float = 0.9, variant: str = "full", preset: str = "tiny") -> Path:
    """``eval/<split>[-<mode>]/`` with the engine's own table builders and summary layout."""
    from gdkvm.data.store import open_store
    from gdkvm.engine.evaluate import (
        _json_safe,
        ef_table,
        eval_dir,
        frame_table,
        summarize_ef,
        summarize_segmentation,
        video_table,
    )

    store = open_store(store_dir, split)
    rng = np.random.default_rng(seed)
    pred = _predictions(np.asarray(store.masks), rng, quality)
    labeled = np.asarray(store.labeled)
    frames = frame_table(pred.astype(bool), store.masks, labeled, store.manifest, mode)
    videos = video_table(frames, mode)
    ef = ef_table(pred.astype(bool), store.masks, labeled, store.manifest, store.dataset)
    summary = {"run": run_dir.name, "variant": variant, "preset": preset, "dataset": store.dataset, "split": split,
               "mode": mode, "checkpoint": "checkpoint_best.safetensors", "n_videos": len(store),
               "unit": str(frames["unit"].iloc[0]), "n_boot": 20,
               "segmentation": summarize_segmentation(frames, mode, 20, 0), "ef": summarize_ef(ef)}
    out = eval_dir(run_dir, split, mode)
    out.mkdir(parents=True)
    frames.to_csv(out / "per_frame.csv", index=False, lineterminator="\n")
    videos.to_csv(out / "per_video.csv", index=False, lineterminator="\n")
    ef.to_csv(out / "ef.csv", index=False, lineterminator="\n")
    np.save(out / "predictions.npy", pred)
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return out


def write_run(runs_dir: Path, name: str, store_dir: Path, variant: str = "full", preset: str = "tiny",
              iterations: int = 6, finished: bool = True, evaluate: bool = True, gates: bool = True,
              seed: int = 0, quality: float = 0.9) -> Path:
    """A run folder as ``gdkvm train`` (+ ``gdkvm evaluate`` when ``evaluate``) leaves it."""
    from gdkvm.data.locate import store_record
    from gdkvm.engine.config import TrainConfig

    run = runs_dir / name
    run.mkdir(parents=True)
    cfg = TrainConfig(data=str(store_dir), variant=variant, preset=preset, name=name, iterations=iterations,
                      batch_size=2, device="cpu", val_every=2, ckpt_every=2)
    config = {"train": cfg.to_dict(), "model": None, "world_size": 1,
              "versions": {"gdkvm": "0.1.0", "code": "test", "torch": str(torch.__version__)},
              "store": store_record(store_dir, run)}  # the section gdkvm train writes
    save_yaml(run / "config.yaml", config)
    rng = np.random.default_rng(seed)
    logged = iterations if finished else max(iterations // 2, 1)
    write_metrics(run / "metrics.jsonl", logged, rng, gates)
    (run / "checkpoint_last.safetensors").write_bytes(b"")
    if finished:
        done = {"iteration": iterations, "best_dice": 0.9, "best_iteration": iterations, "last_loss": 0.2,
                "elapsed_s": 1.0}
        (run / "train_done.json").write_text(json.dumps(done, indent=2) + "\n")
    if evaluate:
        write_eval(run, store_dir, seed=seed, quality=quality, variant=variant, preset=preset)
    return run


# ------------------------------------------------------------------------------ benchmarks


def fps_row(variant: str, preset: str = "tiny", fps: float = 100.0, batch: int = 1, dtype: str = "fp32",
            mode: str = "model-only", params: int = 1_234_567, status: str = "ok") -> dict:
    """One row of ``gdkvm bench fps`` (FPS_COLUMNS) with a plausible environment stamp."""
    from gdkvm.bench.fps import FPS_SCHEMA_VERSION

    ok = status == "ok"
    return {"schema_version": FPS_SCHEMA_VERSION, "bench": "fps", "timestamp": "2026-01-01T00:00:00+00:00",
            "commit": "abc1234", "torch_version": "2.13.0", "triton_version": "none", "cuda_version": "none",
            "device_type": "cpu", "device_name": "Test CPU", "variant": variant, "preset": preset,
            "memory_rule": "gdr", "size": 64, "native_size": "112x112", "batch": batch, "dtype": dtype, "mode": mode,
            "compile": False, "cuda_graphs": False, "memory_backend": "torch", "warmup": 1, "frames": 10, "iters": 1,
            "frames_per_s": fps if ok else None, "ms_per_frame": 1e3 / fps if ok else None,
            "step_ms_median": 1e3 / fps if ok else None, "step_ms_p90": None, "params": params,
            "gflops_per_frame": 1.0, "peak_mem_bytes": 1000, "peak_mem_method": "tracked", "state_bytes": 100,
            "speedup_vs_reference": None, "mask_agreement": None, "status": status, "note": ""}


def write_fps_csv(bench_dir: Path, rows: list[dict], name: str = "fps-test-cpu-fp32-abc1234.csv") -> Path:
    """Rows written by the bench module's own CSV writer."""
    from gdkvm.bench.common import write_csv_rows
    from gdkvm.bench.fps import FPS_COLUMNS

    return write_csv_rows(bench_dir / name, FPS_COLUMNS, [_fit(r, FPS_COLUMNS) for r in rows])


def _fit(row: dict, columns: tuple[str, ...]) -> dict:
    """The row with exactly the schema's columns (stamp fields this fixture does not know left empty)."""
    return {c: row.get(c) for c in columns}


def write_scaling_csv(bench_dir: Path, rules: dict[str, float], lengths: tuple[int, ...] = (10, 100, 1000),
                      name: str = "scaling-test-cpu-abc1234.csv") -> Path:
    """Scaling rows: ``rules`` maps a memory rule to how its state grows per frame (0 = constant)."""
    from gdkvm.bench.common import write_csv_rows
    from gdkvm.bench.scaling import SCALING_COLUMNS, SCALING_SCHEMA_VERSION

    rows = []
    for rule, growth in rules.items():
        for t in lengths:
            state = 4096 * (1 + growth * t)
            rows.append({"schema_version": SCALING_SCHEMA_VERSION, "bench": "scaling", "timestamp": "x",
                         "commit": "abc1234", "torch_version": "2.13.0", "triton_version": "none",
                         "cuda_version": "none", "device_type": "cpu", "device_name": "Test CPU",
                         "memory_rule": rule, "variant": rule, "preset": "tiny", "size": 64, "batch": 1,
                         "dtype": "fp32", "frames": t, "ms_per_frame_mean": 2.0 * (1 + growth * t / 2),
                         "ms_per_frame_at_t": 2.0 * (1 + growth * t), "state_bytes": state,
                         "peak_mem_bytes": state + 10_000, "peak_mem_method": "tracked", "status": "ok", "note": ""})
    return write_csv_rows(bench_dir / name, SCALING_COLUMNS, [_fit(r, SCALING_COLUMNS) for r in rows])


def write_old_fps_csv(path: Path, schema_version: int | None = 0, drop: tuple[str, ...] = ()) -> Path:
    """An fps CSV from an older or broken format: another ``schema_version`` (None: no such column) or
    with ``drop`` columns removed."""
    from gdkvm.bench.fps import FPS_COLUMNS

    row = fps_row("full", fps=5.0)
    columns = [c for c in FPS_COLUMNS if c not in drop and not (schema_version is None and c == "schema_version")]
    if schema_version is not None:
        row["schema_version"] = schema_version
    frame = pd.DataFrame([{c: row.get(c) for c in columns}], columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
