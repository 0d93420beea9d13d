"""Turn a trained run into the package's shipped weights (gdkvm/weights/gdkvm-phantom.safetensors).

    python scripts/ship_weights.py RUN --phantom PHANTOM_DIR [--checkpoint best|last] [--out FILE]

The checkpoint is rebuilt through the registry, checked, and written again with the metadata `predict`
needs without a run folder: ``input_size`` (the training frame size), ``weights_name``, and where it came
from (``phantom_version``, ``difficulty``, ``recipe``). scripts/build_weights.sh runs the whole recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdkvm.config import load_yaml  # noqa: E402
from gdkvm.data.store import read_store_meta  # noqa: E402
from gdkvm.models.weights import load_model, save_checkpoint, shipped_weights_path  # noqa: E402
from gdkvm.predict.segmenter import find_checkpoint, training_size  # noqa: E402

WEIGHTS_NAME = "gdkvm-phantom-small-v1"
MAX_BYTES = 25 * 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--checkpoint", default="best", choices=("best", "last", "auto"))
    parser.add_argument("--phantom", type=Path, required=True,
                        help="the phantom folder the run's data was prepared from (phantom_truth.json)")
    parser.add_argument("--out", type=Path, default=shipped_weights_path())
    args = parser.parse_args()
    ckpt = find_checkpoint(args.run, args.checkpoint)
    cfg = load_yaml(args.run / "config.yaml")
    train_cfg = cfg.get("train", cfg)
    size = training_size(args.run)
    if size is None:
        raise SystemExit(f"{args.run}: cannot tell the training frame size (prepared data gone?)")
    if not read_store_meta(Path(train_cfg["data"])).get("phantom"):
        raise SystemExit(f"{train_cfg['data']}: not prepared from the phantom; shipped weights are phantom-only")
    meta = json.loads((args.phantom / "phantom_truth.json").read_text())
    phantom = {"phantom_version": meta.get("phantom_version"), "difficulty": meta.get("difficulty"),
               "phantom_seed": meta.get("seed"), "phantom_patients": meta.get("patients"),
               "phantom_foreshortening": meta.get("foreshortening")}
    model = load_model(ckpt, variant=train_cfg.get("variant"))
    recipe = {k: train_cfg.get(k) for k in ("variant", "preset", "iterations", "batch_size", "lr", "schedule",
                                             "supervision", "augment_profile", "seed")}
    save_checkpoint(model, args.out, extra_metadata={
        "input_size": size, "weights_name": WEIGHTS_NAME, "recipe": recipe, "source_checkpoint": ckpt.name,
        **{k: v for k, v in phantom.items() if v is not None},
    })
    n_bytes = args.out.stat().st_size
    print(f"wrote {args.out} ({n_bytes / 1e6:.1f} MB) from {ckpt}")
    if n_bytes > MAX_BYTES:
        args.out.unlink()
        raise SystemExit(f"{args.out}: {n_bytes / 1e6:.1f} MB is over the 25 MB limit; removed it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
