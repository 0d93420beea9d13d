"""Read what the other stages wrote into tidy DataFrames, noting plainly what is missing.

Inputs, each read with its producer's reader (the file names live there too):

* run folders ``<runs>/<name>/`` through :mod:`gdkvm.engine.run_files` (``config.yaml``,
  ``metrics.jsonl``, ``train_done.json``, ``eval/<split>[-<mode>]/...``, ablation summaries);
  the run's prepared store, found by :func:`gdkvm.data.locate.locate_store` (its ``store.json``
  records the dataset and whether it was prepared from the synthetic phantom);
* benchmark CSVs under ``results/bench`` through :func:`gdkvm.bench.csv_rows.read_bench_csv`;
* the paper's numbers shipped in ``gdkvm/report/paper`` (long format, see its README).

Nothing here raises on a bad or incomplete input except a runs folder that does not exist: every other
problem becomes one line in :attr:`ReportData.missing` and the rest is still collected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gdkvm.engine import run_files
from gdkvm.errors import GdkvmError
from gdkvm.metrics.clinical import EF_REFERENCES  # one set of labels: terminal table and report

DATASET_NAMES: dict[str, str] = {"camus": "CAMUS", "echonet": "EchoNet-Dynamic"}
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


# ------------------------------------------------------------------------------ small helpers


def _note(missing: list[str], read, *args: Any, suffix: str = "") -> Any:
    """``read(*args)``, or None with the reader's one-line error (plus ``suffix``) added to ``missing``."""
    try:
        return read(*args)
    except GdkvmError as e:
        missing.append(f"{e}{suffix}")
        return None


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


def describe_source(config: dict[str, Any], run_dir: Path, dataset_hint: str | None = None,
                    search: Path | None = None) -> DataSource:
    """Dataset name and provenance (phantom or not) of a run's prepared store.

    Provenance comes from what the writers record, nothing else: ``store.json``'s ``phantom`` flag
    (written by every ``gdkvm prepare``, true when the raw folder was the synthetic phantom's), else the
    copy of it in config.yaml's ``store`` section (written by ``gdkvm train``; used when the store is
    not found or its store.json predates the flag). Without either, provenance is unknown and the label
    says so instead of claiming real data. The dataset name: store.json's ``dataset``, the recorded
    one, ``dataset_hint`` (an evaluation summary's), else the store folder's name (``<prepared>/<dataset>``).
    """
    from gdkvm.data.locate import locate_store

    record = config.get("store") if isinstance(config.get("store"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else config
    data = str(train.get("data") or "")
    try:
        found = locate_store(run_dir, config, search=search)
    except GdkvmError as e:
        store, line, meta = None, str(e), {}
    else:
        store, line, meta = found.path, found.line(), found.meta if isinstance(found.meta, dict) else {}
    dataset = str(meta.get("dataset") or record.get("dataset") or dataset_hint
                  or (Path(data).name if data else "unknown"))
    paper_dataset = DATASET_NAMES.get(dataset, dataset)
    phantom: bool | None = None
    evidence = ""
    if isinstance(meta.get("phantom"), bool):
        phantom = meta["phantom"]
        evidence = f"store.json 'phantom': {str(phantom).lower()}"
    elif isinstance(record.get("phantom"), bool):
        phantom = record["phantom"]
        why = "store not found" if store is None else "store.json does not record it"
        evidence = f"config.yaml 'store.phantom': {str(phantom).lower()} (recorded at train time; {why})"
    if phantom:
        label = f"synthetic phantom ({paper_dataset} format)"
    elif phantom is False:
        label = paper_dataset
    else:
        where = "store not found" if store is None else "store.json has no 'phantom' flag (prepared by an older gdkvm)"
        label = f"{paper_dataset} format, provenance unknown"
        evidence = f"{where}; not marked as real data"
    return DataSource(dataset, paper_dataset, phantom, label, evidence, store, line)


# ------------------------------------------------------------------------------ metrics.jsonl


def read_metrics(run_dir: Path, missing: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training curve, validation curve and gate statistics from the run's ``metrics.jsonl``
    (:func:`gdkvm.engine.run_files.read_metrics_log`).

    Returns:
        train: one row per iteration (iteration, loss, ce, dice_loss, lr, grad_norm, clips_per_s);
        val: one row per validation (iteration, dice, best_dice);
        gates: one row per (iteration, gate) with GATE_FIELDS and ``hist`` (list of counts over
        [min, max]); gate names as logged (``alpha``, ``beta``, ``alpha_grad``, ``beta_grad``, ...).
    """
    train_rows: list[dict[str, Any]] = []
    val_rows: list[dict[str, Any]] = []
    gate_rows: list[dict[str, Any]] = []
    log = _note(missing, run_files.read_metrics_log, run_dir, suffix=" (no loss curve, no gate statistics)")
    for record in log.records if log is not None else []:
        it = int(record["iteration"])
        if record["kind"] == "train":
            train_rows.append({"iteration": it, **{k: _float(record.get(k)) for k in
                               ("loss", "ce", "dice_loss", "lr", "grad_norm", "clips_per_s")}})
            for gate, stats in (record.get("gates") or {}).items():
                if isinstance(stats, dict) and stats.get("n", 0):
                    row = {"iteration": it, "gate": str(gate), **{k: _float(stats.get(k)) for k in GATE_FIELDS}}
                    hist = stats.get("hist")
                    row["hist"] = [float(h) for h in hist] if isinstance(hist, list) else None
                    gate_rows.append(row)
        elif record["kind"] == "val":
            val_rows.append({"iteration": it, "dice": _float(record.get("dice")),
                             "best_dice": _float(record.get("best_dice"))})
    if log is not None and log.bad_lines:
        missing.append(f"{log.path}: {log.bad_lines} unreadable line(s) skipped")
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


def read_eval(folder: Path, missing: list[str]) -> EvalData | None:
    """One ``eval/<split>[-<mode>]`` folder; None (with a note) when its summary is absent or bad."""
    files = _note(missing, run_files.read_eval_summary, folder)
    if files is None:
        return None
    per_video = _note(missing, run_files.read_per_video, folder)
    per_frame = _note(missing, run_files.read_per_frame, folder)
    ef = _note(missing, run_files.read_ef, folder, suffix=" (no Bland-Altman / regression plot)")
    predictions = _note(missing, run_files.predictions_file, folder,
                        suffix=" (no qualitative overlays for this evaluation)")
    return EvalData(folder, files.split, files.mode, files.summary, per_video, per_frame, ef, predictions)


# ------------------------------------------------------------------------------ runs


def read_run(run_dir: Path, missing: list[str], search: Path | None = None) -> RunData | None:
    """One run folder; None (with a note) when it has no readable ``config.yaml``. ``search``: a folder
    to look for the run's store in by its recorded id when it is not at the recorded path."""
    config = _note(missing, run_files.read_run_config, run_dir, suffix="; run skipped")
    if config is None:
        return None
    cfg = config.train
    train, val, gates = read_metrics(run_dir, missing)
    finished = _note(missing, run_files.read_train_done, run_dir) is not None
    iterations = int(cfg["iterations"]) if isinstance(cfg.get("iterations"), int) else None
    last = int(train["iteration"].max()) if len(train) else None
    if not finished:
        at = "no step logged" if last is None else f"last logged iteration {last}"
        of = f" of {iterations}" if iterations is not None else ""
        missing.append(f"{run_dir}: training not finished (no readable {run_files.DONE_FILE}; {at}{of})")
    evals = [e for e in (read_eval(f, missing) for f in run_files.eval_folders(run_dir)) if e is not None]
    if not evals:
        missing.append(f"{run_dir}: no evaluation ({run_files.EVAL_DIR}/<split>/{run_files.SUMMARY_FILE}); "
                       f"run `gdkvm evaluate --run {run_dir}` to add it to the tables")
    hint = next((str(e.summary["dataset"]) for e in evals if e.summary.get("dataset")), None)
    source = describe_source(config.raw, run_dir, hint, search)
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
        if not run_files.is_run_folder(child):
            missing.append(f"{child}: skipped, no {run_files.CONFIG_FILE} (not a run folder)")
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
        frame = _note(missing, run_files.read_table, paper_dir / f"{stem}.csv", "paper table", columns)
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
                                          "peak_mem_bytes", "peak_mem_method", "device_name", "dtype", "status",
                                          "ok", "file")


def _ok(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.strip().str.lower().str.startswith("ok")


def _truthy(series: pd.Series) -> pd.Series:
    return series.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


#: What the report needs from each benchmark kind it reads.
NEEDED: dict[str, tuple[str, ...]] = {"fps": FPS_NEEDED, "scaling": SCALING_NEEDED}


def _bench_file(path: Path, missing: list[str]) -> tuple[str, pd.DataFrame] | None:
    """One benchmark CSV read by :func:`gdkvm.bench.csv_rows.read_bench_csv`; (kind, rows) when it is
    an fps or scaling file with the columns the report needs."""
    from gdkvm.bench.csv_rows import read_bench_csv

    found = _note(missing, read_bench_csv, path, suffix="; skipped")
    if found is None or found.kind not in NEEDED:
        return None  # unreadable, or e.g. kernel micro-benchmarks: not part of the report
    lacking = [c for c in NEEDED[found.kind] if c not in found.rows.columns]
    if lacking:
        missing.append(f"{path}: {found.kind} benchmark CSV lacks column(s) {', '.join(lacking)}; skipped")
        return None
    return found.kind, found.rows.assign(file=path.name)


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
        for path in sorted(bench_dir.rglob("*.csv")):
            found = _bench_file(path, missing)
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
