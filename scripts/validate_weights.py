"""Measure weights on a phantom they never saw: the numbers gdkvm/weights/MODEL_CARD.md quotes.

    python scripts/validate_weights.py PHANTOM_DIR [--weights FILE] [--patients N] [--out CSV] [--device cpu]

Without ``--weights`` the package's shipped weights are measured. Per patient of the phantom:

- CAMUS format: Dice of the LV label on every labelled frame of both views;
- EchoNet format: Dice on the video's two traced frames (ED and ES);
- ``predict`` on the whole video (the same code as ``gdkvm predict``, quality checks included): its mean EF
  against the EF a perfect tracer of the imaged plane reads (``tracing_ef`` in phantom_truth.json) and
  against the exact 3D EF of ``FileList.csv``.

Every mask comes from the segmenter ``predict`` uses (the one frame pipeline). Writes one CSV row per patient
(atomically) and prints the summary lines of the model card.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdkvm.data.camus import find_camus_root, list_patients, load_camus_case  # noqa: E402
from gdkvm.data.echonet import find_echonet_root, index_echonet, load_echonet_case  # noqa: E402
from gdkvm.metrics.segmentation import segmentation_metrics  # noqa: E402
from gdkvm.predict.run import predict_one  # noqa: E402
from gdkvm.predict.segmenter import load_segmenter  # noqa: E402
from gdkvm.utils.atomic import atomic_path  # noqa: E402

COLUMNS = ("patient", "camus_frames", "camus_dice", "camus_dice_min", "video", "echonet_dice", "predict_ok",
           "predict_flags", "predict_ef", "plane_ef", "exact_ef")


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two (H, W) masks (nonzero is foreground) by the project's clean metric (NaN when both are
    empty, 0 when one is)."""
    return float(segmentation_metrics(pred > 0, ref > 0)["dice"])


def measure(phantom: Path, weights: Path | None, patients: int | None, device: str) -> pd.DataFrame:
    """One row per patient with :data:`COLUMNS` (Dice as fractions, EF in %)."""
    truth = json.loads((phantom / "phantom_truth.json").read_text())
    loaded = load_segmenter(weights=weights, device=device)
    print(loaded.source)
    segment = loaded.segmenter
    camus_root = find_camus_root(phantom / "CAMUS_public")
    videos = {e.info.file_name: e for e in index_echonet(find_echonet_root(phantom / "EchoNet-Dynamic")).entries}
    rows = []
    names = list_patients(camus_root)[: patients or None]
    with tempfile.TemporaryDirectory() as scratch:
        for i, patient in enumerate(names, start=1):
            frame_dice = []
            for view in ("2CH", "4CH"):
                case = load_camus_case(camus_root, patient, view)
                masks = segment(case.images)
                frame_dice += [dice(m, lab == 1) for m, lab in zip(masks, case.labels, strict=True)]
            video = truth["camus"][patient]["echonet"]
            entry = videos[video]
            echo = load_echonet_case(entry)
            masks = segment(echo.video)
            echo_dice = np.mean([dice(masks[echo.ed_frame], echo.ed_mask), dice(masks[echo.es_frame], echo.es_mask)])
            outcome = predict_one(entry.video_path, segment, Path(scratch) / video, overlay_video=False)
            summary = outcome.summary
            quality = summary.get("quality") or {}
            rows.append({
                "patient": patient, "camus_frames": len(frame_dice), "camus_dice": float(np.nanmean(frame_dice)),
                "camus_dice_min": float(np.nanmin(frame_dice)), "video": video, "echonet_dice": float(echo_dice),
                "predict_ok": bool(outcome.ok and quality.get("ok")),
                "predict_flags": "; ".join(quality.get("flags", [])) if outcome.ok else outcome.error,
                "predict_ef": summary.get("mean_ef"), "plane_ef": truth["echonet"][video]["tracing_ef"],
                "exact_ef": truth["echonet"][video]["EF"],
            })
            ef = rows[-1]["predict_ef"]
            print(f"{i}/{len(names)} {patient}: CAMUS Dice {100 * rows[-1]['camus_dice']:.1f}, "
                  f"EchoNet Dice {100 * echo_dice:.1f}, EF {'-' if ef is None else f'{ef:.1f}'} "
                  f"(plane {rows[-1]['plane_ef']:.1f}, exact {rows[-1]['exact_ef']:.1f})", flush=True)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary_lines(frame: pd.DataFrame) -> list[str]:
    """The model card's lines: mean and minimum Dice x100, predict EF MAE and bias against both EFs."""
    lines = [
        f"CAMUS: {len(frame)} patients, {int(frame['camus_frames'].sum())} labelled frames, Dice x100 "
        f"{100 * frame['camus_dice'].mean():.1f} (patient min {100 * frame['camus_dice'].min():.1f}, "
        f"frame min {100 * frame['camus_dice_min'].min():.1f})",
        f"EchoNet traced ED/ES: {len(frame)} videos, Dice x100 {100 * frame['echonet_dice'].mean():.1f} "
        f"(min {100 * frame['echonet_dice'].min():.1f})",
    ]
    ef = pd.to_numeric(frame["predict_ef"], errors="coerce")
    have = ef.notna()
    flagged = int((~frame["predict_ok"].astype(bool)).sum())
    line = f"predict: {int(have.sum())} of {len(frame)} videos with a mean EF, {flagged} flagged"
    for name in ("plane_ef", "exact_ef"):
        err = ef[have] - frame.loc[have, name].astype(float)
        if len(err):
            line += f"; vs {name}: MAE {err.abs().mean():.1f}, bias {err.mean():+.1f}"
    return [*lines, line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phantom", type=Path, help="a folder written by `gdkvm prepare synthetic`")
    parser.add_argument("--weights", type=Path, default=None, help="a checkpoint (default: the shipped weights)")
    parser.add_argument("--patients", type=int, default=None, help="only the first N patients")
    parser.add_argument("--out", type=Path, default=None, help="per-patient CSV (default: print only)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.phantom / "phantom_truth.json").is_file():
        raise SystemExit(f"{args.phantom}: no phantom_truth.json (not a `gdkvm prepare synthetic` folder)")
    frame = measure(args.phantom, args.weights, args.patients, args.device)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    for line in summary_lines(frame):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
