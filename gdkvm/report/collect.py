"""Read what the other stages wrote into tidy DataFrames, noting plainly what is missing.

Inputs (formats from :mod:`gdkvm.engine`, :mod:`gdkvm.bench` and ``gdkvm/report/paper``):

* run folders ``<runs>/<name>/``: ``config.yaml``, ``metrics.jsonl``, ``train_done.json`` and
  ``eval/<split>[-<mode>]/{summary.json, per_video.csv, per_frame.csv, ef.csv, predictions.npy}``;
  the run's prepared store, found as :func:`gdkvm.data.locate.locate_store` says (its ``store.json``
  tells the dataset and, where recorded, whether it came from the synthetic phantom);
* benchmark CSVs under ``results/bench`` (schemas of :mod:`gdkvm.bench.fps` / :mod:`gdkvm.bench.scaling`);
* the paper's numbers shipped in ``gdkvm/report/paper`` (long format, see its README).

Nothing here raises on a bad or incomplete input except a runs folder that does not exist: every other
problem becomes one line in :attr:`ReportData.missing` and the rest is still collected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gdkvm.errors import GdkvmError
from gdkvm.metrics.clinical import EF_REFERENCES  # one set of labels: terminal table and report

DATASET_NAMES: dict[str, str] = {"camus": "CAMUS", "echonet": "EchoNet-Dynamic"}
PHANTOM_FILES: tuple[str, ...] = ("phantom_truth.json", "README_PHANTOM.txt", "CAMUS_public/README_PHANTOM.txt")
EVAL_FILES: tuple[str, ...] = ("summary.json", "per_video.csv", "per_frame.csv", "ef.csv", "predictions.npy")
GATE_FIELDS: tuple[str, ...] = ("n", "mean", "std", "min", "max", "q05", "q25", "q50", "q75", "q95", "norm")

PAPER_FILES: dict[str, tuple[str, ...]] = {
    "table1_segmentation": ("method", "venue", "dataset", "metric", "value"),
    "table2_ef_camus": ("method", "venue", "dataset", "metric", "value"),
    "table3_ablation_components": ("variant", "row", "dataset", "metric", "value"),
    "table4_ablation_update_rules": ("variant", "row", "dataset", "metric", "value"),
    "table5_ef_echonet": ("method", "venue", "dataset", "metric", "value"),
    "fig5_speed_params": ("method", "dataset", "metric", "value"),
}

SEGMENTATION_COLUMNS: tuple[str, ...] = (
    "run", "variant", "preset", "dataset", "paper_dataset", "data_label", "phantom", "finished",
    "split", "mode", "checkpoint", "n_videos", "n_frames", "unit",
    "mdice", "miou", "hd95", "asd", "hd", "mdice_ci_low", "mdice_ci_high",
)
EF_COLUMNS: tuple[str, ...] = (
    "run", "variant", "preset", "dataset", "paper_dataset", "data_label", "phantom",
    "split", "mode", "method", "reference", "n", "n_dropped", "corr", "bias", "sd", "loa_low", "loa_high",
    "mae", "memsam_bias", "memsam_std",
)



# ------------------------------------------------------------------------------ data classes


@dataclass(frozen=True)
class DataSource:
    """Where a run's data came from.

    Attributes:
        dataset: the store's dataset name (``camus``, ``echonet``, ...).
        paper_dataset: the paper's name for it (``CAMUS``, ``EchoNet-Dynamic``), else ``dataset``.
        phantom: True for the synthetic phantom, False when the store says it is real data, None when
            nothing says either way.
        label: what tables and figures print, e.g. ``synthetic phantom (CAMUS format)``.
        evidence: why ``phantom`` has its value (one line).
        store_dir: the prepared dataset folder, when it was found.
        found: one line, which store was used and how it was found, or why none was.
    """

    dataset: str
    paper_dataset: str
    phantom: bool | None
    label: str
    evidence: str
    store_dir: Path | None
    found: str = ""


@dataclass
class EvalData:
    """One evaluation folder ``eval/<split>[-<mode>]`` of a run."""

    path: Path
    split: str
    mode: str
    summary: dict[str, Any]
    per_video: pd.DataFrame | None
    per_frame: pd.DataFrame | None
    ef: pd.DataFrame | None
    predictions: Path | None


@dataclass
class RunData:
    """Everything read from one run folder."""

    name: str
    path: Path
    variant: str
    preset: str
    data: str
    source: DataSource
    finished: bool
    iterations: int | None
    last_iteration: int | None
    train: pd.DataFrame
    val: pd.DataFrame
    gates: pd.DataFrame
    evals: list[EvalData] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``<run> (<variant>/<preset>)``."""
        return f"{self.name} ({self.variant}/{self.preset})"

    def primary_eval(self) -> EvalData | None:
        """The evaluation shown in figures: test/clean if present, else test in any mode, else the first."""
        if not self.evals:
            return None
        ranked = sorted(self.evals, key=lambda e: (e.split != "test", e.mode != "clean", e.split, e.mode))
        return ranked[0]


@dataclass
class ReportData:
    """All inputs of a report as tidy tables, plus plain-language notes on what is missing."""

    runs_dir: Path
    runs: list[RunData]
    segmentation: pd.DataFrame
    ef: pd.DataFrame
    fps: pd.DataFrame
    scaling: pd.DataFrame
    paper: dict[str, pd.DataFrame]
    missing: list[str]
    bench_files: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------ small readers


def _read_json(path: Path, missing: list[str], what: str) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        missing.append(f"{path}: unreadable {what} ({type(e).__name__})")
        return None
    if not isinstance(value, dict):
        missing.append(f"{path}: {what} is not a JSON object")
        return None
    return value


def _read_csv(path: Path, missing: list[str], what: str, required: tuple[str, ...] = ()) -> pd.DataFrame | None:
    if not path.is_file():
        missing.append(f"{path}: {what} not found")
        return None
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # pandas raises many types for a bad CSV
        missing.append(f"{path}: unreadable {what} ({type(e).__name__})")
        return None
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        missing.append(f"{path}: {what} lacks column(s) {', '.join(lacking)}")
        return None
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 1, 0))
        last = f.read(1)
    short = int(frame[list(required)].isna().any(axis=1).sum()) if required else 0
    if last not in (b"\n", b"") or short:
        # a writer killed mid-file (or an old non-atomic one): its numbers would be silently partial
        missing.append(f"{path}: {what} looks truncated (last line incomplete or {short} row(s) with empty "
                       f"{'/'.join(required)})")
        return None
    return frame


def _float(value: Any) -> float:
    """A number or NaN (None, strings and non-finite values become NaN)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


# ------------------------------------------------------------------------------ data source


def find_store(config: dict[str, Any], run_dir: Path, search: Path | None = None) -> tuple[Path | None, str]:
    """The prepared store of a run (parsed ``config.yaml``) and one line saying how it was found, or
    ``(None, why not)``; the search order is :func:`gdkvm.data.locate.locate_store`'s."""
    from gdkvm.data.locate import locate_store

    try:
        found = locate_store(run_dir, config, search=search)
    except GdkvmError as e:
        return None, str(e)
    return found.path, found.line()


def _phantom_from_meta(meta: dict[str, Any]) -> tuple[bool | None, str]:
    """What store.json itself says about being the phantom (fields a store may record)."""
    for key in ("phantom", "synthetic"):
        if isinstance(meta.get(key), bool):
            return meta[key], f"store.json '{key}': {str(meta[key]).lower()}"
    for key in ("source_kind", "provenance", "kind"):
        value = str(meta.get(key, "")).lower()
        if value in ("phantom", "synthetic", "synthetic-phantom"):
            return True, f"store.json '{key}': {meta[key]}"
        if value in ("real", "patient", "public"):
            return False, f"store.json '{key}': {meta[key]}"
    for key in ("raw_root", "root", "source_root"):
        if isinstance(meta.get(key), str) and meta[key]:
            root = Path(meta[key])
            for base in (root, root.parent):
                for marker in PHANTOM_FILES:
                    if (base / marker).is_file():
                        return True, f"{base / marker} next to the raw root"
    texts = [str(meta.get("source", ""))] + [str(n) for n in meta.get("notes", []) if isinstance(n, str)]
    for text in texts:
        if "phantom" in text.lower() or "synthetic" in text.lower():
            return True, f"store.json mentions it: {text[:80]!r}"
    return None, ""


def describe_source(config: dict[str, Any], run_dir: Path, dataset_hint: str | None = None,
                    search: Path | None = None) -> DataSource:
    """Dataset name and provenance (phantom or not) of a run's prepared store.

    The phantom writes ``README_PHANTOM.txt`` and ``phantom_truth.json`` into its raw folder; a store
    records whether it was prepared from one in ``store.json`` (fields checked by
    :func:`_phantom_from_meta`). Failing that, a phantom marker file in the store folder or its two
    parents counts (a store prepared inside the phantom folder). When the store is not found, the
    ``dataset`` and ``phantom`` flags recorded in config.yaml's ``store`` section at train time are used.
    Otherwise provenance is unknown and the label says so instead of claiming real data.
    """
    store, found = find_store(config, run_dir, search)
    train = config.get("train") if isinstance(config.get("train"), dict) else config
    data = str(train.get("data") or "")
    record = config.get("store") if isinstance(config.get("store"), dict) else {}
    meta: dict[str, Any] = {}
    if store is not None:
        try:
            meta = json.loads((store / "store.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
    dataset = str(meta.get("dataset") or record.get("dataset") or dataset_hint
                  or (Path(data).name if data else "unknown"))
    paper_dataset = DATASET_NAMES.get(dataset, dataset)
    phantom, evidence = _phantom_from_meta(meta)
    if phantom is None and store is None and isinstance(record.get("phantom"), bool):
        phantom = record["phantom"]
        evidence = f"config.yaml 'store.phantom': {str(phantom).lower()} (recorded at train time; store not found)"
    if phantom is None and store is not None:
        for base in (store, store.parent, store.parent.parent):
            for marker in PHANTOM_FILES:
                if (base / marker).is_file():
                    phantom, evidence = True, f"{base / marker} beside the store"
                    break
            if phantom:
                break
    if phantom:
        label = f"synthetic phantom ({paper_dataset} format)"
    elif phantom is False:
        label = paper_dataset
    else:
        where = "store not found" if store is None else "store does not record its source"
        label = f"{paper_dataset} format, provenance unknown"
        evidence = f"{where}; not marked as real data"
    return DataSource(dataset, paper_dataset, phantom, label, evidence, store, found)


# ------------------------------------------------------------------------------ metrics.jsonl


def read_metrics(path: Path, missing: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training curve, validation curve and gate statistics from ``metrics.jsonl``.

    Returns:
        train: one row per iteration (iteration, loss, ce, dice_loss, lr, grad_norm, clips_per_s);
        val: one row per validation (iteration, dice, best_dice);
        gates: one row per (iteration, gate) with GATE_FIELDS and ``hist`` (list of counts over
        [min, max]); gate names as logged (``alpha``, ``beta``, ``alpha_grad``, ``beta_grad``, ...).
    """
    train_rows: list[dict[str, Any]] = []
    val_rows: list[dict[str, Any]] = []
    gate_rows: list[dict[str, Any]] = []
    if not path.is_file():
        missing.append(f"{path}: training log not found (no loss curve, no gate statistics)")
    else:
        bad = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(record, dict) or "iteration" not in record:
                bad += 1
                continue
            it = int(record["iteration"])
            kind = record.get("kind", "train")
            if kind == "train":
                train_rows.append({"iteration": it, **{k: _float(record.get(k)) for k in
                                   ("loss", "ce", "dice_loss", "lr", "grad_norm", "clips_per_s")}})
                for gate, stats in (record.get("gates") or {}).items():
                    if isinstance(stats, dict) and stats.get("n", 0):
                        row = {"iteration": it, "gate": str(gate), **{k: _float(stats.get(k)) for k in GATE_FIELDS}}
                        hist = stats.get("hist")
                        row["hist"] = [float(h) for h in hist] if isinstance(hist, list) else None
                        gate_rows.append(row)
            elif kind == "val":
                val_rows.append({"iteration": it, "dice": _float(record.get("dice")),
                                 "best_dice": _float(record.get("best_dice"))})
        if bad:
            missing.append(f"{path}: {bad} unreadable line(s) skipped")
    train = pd.DataFrame(train_rows, columns=["iteration", "loss", "ce", "dice_loss", "lr", "grad_norm",
                                              "clips_per_s"])
    val = pd.DataFrame(val_rows, columns=["iteration", "dice", "best_dice"])
    gates = pd.DataFrame(gate_rows, columns=["iteration", "gate", *GATE_FIELDS, "hist"])
    # A resumed run may repeat iterations; the later record wins.
    train = train.drop_duplicates("iteration", keep="last").sort_values("iteration", ignore_index=True)
    val = val.drop_duplicates("iteration", keep="last").sort_values("iteration", ignore_index=True)
    gates = gates.drop_duplicates(["iteration", "gate"], keep="last").sort_values(
        ["gate", "iteration"], ignore_index=True)
    return train, val, gates


# ------------------------------------------------------------------------------ evaluations


def _split_mode(name: str) -> tuple[str, str]:
    for mode in ("memsam", "gdkvm-legacy"):
        if name.endswith(f"-{mode}"):
            return name[: -len(mode) - 1], mode
    return name, "clean"


def read_eval(folder: Path, missing: list[str]) -> EvalData | None:
    """One ``eval/<split>[-<mode>]`` folder; None (with a note) when its summary is absent or bad."""
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        missing.append(f"{folder}: evaluation incomplete (no summary.json)")
        return None
    summary = _read_json(summary_path, missing, "evaluation summary")
    if summary is None:
        return None
    if not isinstance(summary.get("segmentation"), dict) or "overall" not in summary["segmentation"]:
        missing.append(f"{summary_path}: no segmentation.overall block (not an evaluation summary)")
        return None
    split, mode = _split_mode(folder.name)
    per_video = _read_csv(folder / "per_video.csv", missing, "per-video table", ("video", "dice"))
    per_frame = _read_csv(folder / "per_frame.csv", missing, "per-frame table", ("video", "frame", "dice"))
    ef_path = folder / "ef.csv"
    ef = _read_csv(ef_path, missing, "EF table", ("method", "ef_pred", "ef_ref")) if ef_path.is_file() else None
    if ef is None and not ef_path.is_file():
        missing.append(f"{ef_path}: EF table not found (no Bland-Altman / regression plot)")
    predictions = folder / "predictions.npy"
    if not predictions.is_file():
        missing.append(f"{predictions}: not found (no qualitative overlays for this evaluation)")
        predictions = None
    return EvalData(folder, str(summary.get("split", split)), str(summary.get("mode", mode)), summary,
                    per_video, per_frame, ef, predictions)


# ------------------------------------------------------------------------------ runs


def _config_fields(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict) and isinstance(raw.get("train"), dict):
        return raw["train"]
    return raw if isinstance(raw, dict) else {}


def read_run(run_dir: Path, missing: list[str], search: Path | None = None) -> RunData | None:
    """One run folder; None (with a note) when it has no readable ``config.yaml``. ``search``: a folder
    to look for the run's store in by its recorded id when it is not at the recorded path."""
    from gdkvm.config import load_yaml

    try:
        raw = load_yaml(run_dir / "config.yaml")
        cfg = _config_fields(raw)
    except GdkvmError as e:
        missing.append(f"{run_dir}: skipped, {e}")
        return None
    if "variant" not in cfg or "data" not in cfg:
        missing.append(f"{run_dir / 'config.yaml'}: skipped, no 'variant'/'data' (not a gdkvm run config)")
        return None
    train, val, gates = read_metrics(run_dir / "metrics.jsonl", missing)
    done_path = run_dir / "train_done.json"
    finished = done_path.is_file()
    iterations = int(cfg["iterations"]) if isinstance(cfg.get("iterations"), int) else None
    last = int(train["iteration"].max()) if len(train) else None
    if not finished:
        at = "no step logged" if last is None else f"last logged iteration {last}"
        of = f" of {iterations}" if iterations is not None else ""
        missing.append(f"{run_dir}: training not finished (no train_done.json; {at}{of})")
    evals = []
    eval_root = run_dir / "eval"
    if eval_root.is_dir():
        for folder in sorted(p for p in eval_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found = read_eval(folder, missing)
            if found is not None:
                evals.append(found)
    if not evals:
        missing.append(f"{run_dir}: no evaluation (eval/<split>/summary.json); "
                       f"run `gdkvm evaluate --run {run_dir}` to add it to the tables")
    hint = next((str(e.summary["dataset"]) for e in evals if e.summary.get("dataset")), None)
    source = describe_source(raw if isinstance(raw, dict) else {}, run_dir, hint, search)
    if source.store_dir is None:
        missing.append(f"{source.found} (no qualitative overlays)")
    return RunData(name=run_dir.name, path=run_dir, variant=str(cfg["variant"]), preset=str(cfg.get("preset", "?")),
                   data=str(cfg.get("data", "")), source=source, finished=finished, iterations=iterations,
                   last_iteration=last, train=train, val=val, gates=gates, evals=evals)


def read_runs(runs_dir: Path, missing: list[str], search: Path | None = None) -> list[RunData]:
    """Every run folder directly under ``runs_dir`` (sorted by name).

    Raises:
        GdkvmError: ``runs_dir`` does not exist or is not a folder.
    """
    if not runs_dir.is_dir():
        raise GdkvmError(f"{runs_dir}: runs folder not found")
    runs = []
    for child in sorted(runs_dir.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if not (child / "config.yaml").is_file():
            missing.append(f"{child}: skipped, no config.yaml (not a run folder)")
            continue
        run = read_run(child, missing, search)
        if run is not None:
            runs.append(run)
    if not runs:
        missing.append(f"{runs_dir}: no run folders (train one with `gdkvm train`)")
    elif not any(r.finished and r.evals for r in runs):
        missing.append(f"{runs_dir}: no finished and evaluated run")
    return runs


# ------------------------------------------------------------------------------ tidy tables


def _seg_entry(summary: dict[str, Any], metric: str, key: str = "mean") -> float:
    block = summary.get("segmentation", {}).get("overall", {}).get(metric, {})
    return _float(block.get(key)) if isinstance(block, dict) else math.nan


def _run_columns(run: RunData) -> dict[str, Any]:
    return {"run": run.name, "variant": run.variant, "preset": run.preset, "dataset": run.source.dataset,
            "paper_dataset": run.source.paper_dataset, "data_label": run.source.label,
            "phantom": run.source.phantom}


def segmentation_table(runs: list[RunData]) -> pd.DataFrame:
    """One row per (run, evaluation): overall means from summary.json, Dice and IoU in percent.

    ``hd`` (maximum distance) is not in summary.json; it is the mean of the finite per-frame values.
    """
    rows = []
    for run in runs:
        for ev in run.evals:
            s = ev.summary
            hd = math.nan
            if ev.per_frame is not None and "hd" in ev.per_frame.columns:
                values = pd.to_numeric(ev.per_frame["hd"], errors="coerce").to_numpy(dtype=np.float64)
                values = values[np.isfinite(values)]
                hd = float(values.mean()) if values.size else math.nan
            rows.append({
                **_run_columns(run), "finished": run.finished, "split": ev.split, "mode": ev.mode,
                "checkpoint": s.get("checkpoint"), "n_videos": s.get("n_videos"),
                "n_frames": s.get("segmentation", {}).get("overall", {}).get("n_frames"),
                "unit": s.get("unit") or "",
                "mdice": 100 * _seg_entry(s, "dice"), "miou": 100 * _seg_entry(s, "iou"),
                "hd95": _seg_entry(s, "hd95"), "asd": _seg_entry(s, "asd"), "hd": hd,
                "mdice_ci_low": 100 * _seg_entry(s, "dice", "ci_low"),
                "mdice_ci_high": 100 * _seg_entry(s, "dice", "ci_high"),
            })
    return pd.DataFrame(rows, columns=list(SEGMENTATION_COLUMNS))


def ef_agreement_table(runs: list[RunData]) -> pd.DataFrame:
    """One row per (run, evaluation, EF method, reference) from summary.json's ``ef`` block.

    ``bias``/``sd``: standard Bland-Altman (mean and sample SD of pred - ref); ``memsam_bias``/
    ``memsam_std``: MemSAM's definitions (mean absolute difference; SD of the predictions).
    """
    rows = []
    for run in runs:
        for ev in run.evals:
            for method, block in (ev.summary.get("ef") or {}).items():
                if not isinstance(block, dict):
                    continue
                for key, reference in EF_REFERENCES.items():
                    stats = block.get(key)
                    if not isinstance(stats, dict) or not stats.get("n"):
                        continue
                    rows.append({
                        **_run_columns(run), "split": ev.split, "mode": ev.mode, "method": str(method),
                        "reference": reference, "n": int(stats["n"]), "n_dropped": int(stats.get("n_dropped") or 0),
                        "corr": _float(stats.get("pearson_r")), "bias": _float(stats.get("bias")),
                        "sd": _float(stats.get("sd")), "loa_low": _float(stats.get("loa_low")),
                        "loa_high": _float(stats.get("loa_high")), "mae": _float(stats.get("mae")),
                        "memsam_bias": _float(stats.get("memsam_bias")),
                        "memsam_std": _float(stats.get("memsam_std")),
                    })
    return pd.DataFrame(rows, columns=list(EF_COLUMNS))


# ------------------------------------------------------------------------------ paper


def read_paper(paper_dir: Path, missing: list[str]) -> dict[str, pd.DataFrame]:
    """The paper CSVs by stem (``table1_segmentation``, ...); absent or malformed ones are noted."""
    out: dict[str, pd.DataFrame] = {}
    if not paper_dir.is_dir():
        missing.append(f"{paper_dir}: paper numbers folder not found (tables show our runs only)")
        return out
    for stem, columns in PAPER_FILES.items():
        frame = _read_csv(paper_dir / f"{stem}.csv", missing, "paper table", columns)
        if frame is not None:
            frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
            out[stem] = frame
    return out


# ------------------------------------------------------------------------------ benchmarks

#: Columns the report needs from each benchmark kind (a subset of the bench modules' schemas).
FPS_NEEDED: tuple[str, ...] = ("schema_version", "bench", "variant", "preset", "batch", "dtype", "mode",
                               "frames_per_s", "ms_per_frame", "params", "device_name", "commit", "status")
SCALING_NEEDED: tuple[str, ...] = ("schema_version", "bench", "memory_rule", "frames", "ms_per_frame_mean",
                                   "ms_per_frame_at_t", "state_bytes", "peak_mem_bytes", "device_name", "dtype",
                                   "status")
FPS_FRAME_COLUMNS: tuple[str, ...] = ("variant", "preset", "mode", "dtype", "batch", "compile", "cuda_graphs", "fps",
                                      "ms_per_frame", "params", "params_m", "device_type", "device_name", "commit", "status",
                                      "ok", "file")
SCALING_FRAME_COLUMNS: tuple[str, ...] = ("rule", "frames", "ms_per_frame", "ms_at_t", "state_bytes",
                                          "peak_mem_bytes", "device_name", "dtype", "status", "ok", "file")


def bench_schemas() -> dict[str, tuple[int | None, tuple[str, ...]]]:
    """``{bench kind: (schema version this gdkvm writes, columns the report needs)}``.

    The versions come from the bench modules themselves, so a format change there shows up here.
    """
    out: dict[str, tuple[int | None, tuple[str, ...]]] = {}
    try:
        from gdkvm.bench import fps

        out["fps"] = (int(fps.FPS_SCHEMA_VERSION), FPS_NEEDED)
    except (ImportError, AttributeError):
        out["fps"] = (None, FPS_NEEDED)
    try:
        from gdkvm.bench import scaling

        out["scaling"] = (int(scaling.SCALING_SCHEMA_VERSION), SCALING_NEEDED)
    except (ImportError, AttributeError):
        out["scaling"] = (None, SCALING_NEEDED)
    return out


def _truthy(series: pd.Series) -> pd.Series:
    return series.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


def _ok(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.strip().str.lower().str.startswith("ok")


def _bench_file(path: Path, missing: list[str], schemas: dict[str, tuple[int | None, tuple[str, ...]]]
                ) -> tuple[str, pd.DataFrame] | None:
    """Read one benchmark CSV; (kind, rows) when its kind and schema are ones this report reads."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # empty / binary / malformed file
        missing.append(f"{path}: unreadable benchmark CSV ({type(e).__name__}); skipped")
        return None
    if "schema_version" not in frame.columns or "bench" not in frame.columns:
        missing.append(f"{path}: benchmark CSV from an older format (no schema_version/bench column); skipped, "
                       "re-run `gdkvm bench` to regenerate it")
        return None
    if frame.empty:
        missing.append(f"{path}: benchmark CSV holds no rows; skipped")
        return None
    kinds = sorted(set(frame["bench"]))
    if len(kinds) != 1:
        missing.append(f"{path}: mixes benchmark kinds {kinds}; skipped")
        return None
    kind = kinds[0]
    if kind not in schemas:
        return None  # e.g. kernel micro-benchmarks: not part of the report
    version, needed = schemas[kind]
    versions = sorted(set(frame["schema_version"]))
    if version is None or versions != [str(version)]:
        expected = "unknown (gdkvm.bench not importable)" if version is None else str(version)
        missing.append(f"{path}: {kind} benchmark schema_version {', '.join(versions)} is not the one this gdkvm "
                       f"reads ({expected}); skipped, re-run `gdkvm bench {kind}`")
        return None
    lacking = [c for c in needed if c not in frame.columns]
    if lacking:
        missing.append(f"{path}: {kind} benchmark CSV lacks column(s) {', '.join(lacking)}; skipped")
        return None
    frame["file"] = path.name
    return kind, frame


def read_bench(bench_dir: Path, missing: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """fps rows and scaling rows from every ``*.csv`` under ``bench_dir`` (recursively).

    Returns:
        fps: FPS_FRAME_COLUMNS (``fps`` = frames per second, ``params_m`` = parameters in millions,
        ``ok`` = status is ok); scaling: SCALING_FRAME_COLUMNS (``rule`` = memory rule, ``ms_per_frame``
        = mean step time over frames 1..T, ``ms_at_t`` = the cost of frame T); the files that were used.
    """
    fps_parts: list[pd.DataFrame] = []
    scaling_parts: list[pd.DataFrame] = []
    used: list[Path] = []
    if not bench_dir.is_dir():
        missing.append(f"{bench_dir}: benchmark folder not found (no inference times, no Fig. 5 points of ours, "
                       "no scaling plot)")
    else:
        schemas = bench_schemas()
        for path in sorted(bench_dir.rglob("*.csv")):
            found = _bench_file(path, missing, schemas)
            if found is None:
                continue
            kind, frame = found
            used.append(path)
            (fps_parts if kind == "fps" else scaling_parts).append(frame)
    fps = pd.concat(fps_parts, ignore_index=True) if fps_parts else pd.DataFrame(columns=list(FPS_NEEDED) + ["file"])
    fps = fps.assign(
        fps=pd.to_numeric(fps["frames_per_s"], errors="coerce"),
        ms_per_frame=pd.to_numeric(fps["ms_per_frame"], errors="coerce"),
        batch=pd.to_numeric(fps["batch"], errors="coerce"),
        params=pd.to_numeric(fps["params"], errors="coerce"),
        compile=_truthy(fps["compile"]) if "compile" in fps else False,
        cuda_graphs=_truthy(fps["cuda_graphs"]) if "cuda_graphs" in fps else False,
        ok=_ok(fps["status"]),
    )
    fps["params_m"] = fps["params"] / 1e6
    scaling = (pd.concat(scaling_parts, ignore_index=True) if scaling_parts
               else pd.DataFrame(columns=list(SCALING_NEEDED) + ["file"]))
    scaling = scaling.assign(
        rule=scaling["memory_rule"],
        frames=pd.to_numeric(scaling["frames"], errors="coerce"),
        ms_per_frame=pd.to_numeric(scaling["ms_per_frame_mean"], errors="coerce"),
        ms_at_t=pd.to_numeric(scaling["ms_per_frame_at_t"], errors="coerce"),
        state_bytes=pd.to_numeric(scaling["state_bytes"], errors="coerce"),
        peak_mem_bytes=pd.to_numeric(scaling["peak_mem_bytes"], errors="coerce"),
        ok=_ok(scaling["status"]),
    )
    if not fps_parts and bench_dir.is_dir():
        missing.append(f"{bench_dir}: no usable fps benchmark CSV (run `gdkvm bench fps`)")
    return (fps.reindex(columns=list(FPS_FRAME_COLUMNS)).reset_index(drop=True),
            scaling.reindex(columns=list(SCALING_FRAME_COLUMNS)).reset_index(drop=True), used)


# ------------------------------------------------------------------------------ everything


def paper_numbers_dir() -> Path:
    """The paper's numbers shipped with the package (``gdkvm/report/paper/*.csv``)."""
    from importlib.resources import files

    return Path(str(files("gdkvm.report") / "paper"))


def collect(runs_dir: str | Path, bench_dir: str | Path = "results/bench",
            paper_dir: str | Path | None = None, data_dir: str | Path | None = None) -> ReportData:
    """Read runs, benchmarks and paper numbers (``paper_dir`` None: the numbers shipped with gdkvm).
    ``data_dir``: a folder searched for run stores by their recorded id when not at the recorded path.

    Raises:
        GdkvmError: ``runs_dir`` does not exist. Every other problem is a line in ``missing``.
    """
    missing: list[str] = []
    runs_dir = Path(runs_dir)
    runs = read_runs(runs_dir, missing, Path(data_dir) if data_dir is not None else None)
    fps, scaling, files = read_bench(Path(bench_dir), missing)
    paper = read_paper(Path(paper_dir) if paper_dir is not None else paper_numbers_dir(), missing)
    return ReportData(runs_dir=runs_dir, runs=runs, segmentation=segmentation_table(runs),
                      ef=ef_agreement_table(runs), fps=fps, scaling=scaling, paper=paper, missing=missing,
                      bench_files=files)
