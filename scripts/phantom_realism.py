"""Measure how much the phantom looks like real echo: the realism statistics of every difficulty level
(or of a real EchoNet-Dynamic copy) against the targets measured on real recordings.

    python scripts/phantom_realism.py                      # every level, 20 patients, seed 0
    python scripts/phantom_realism.py --echonet ROOT       # a local EchoNet-Dynamic copy (never committed)

Writes results/phantom/realism.csv (one row per level and statistic) and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from gdkvm.data.phantom.difficulty import DIFFICULTIES  # noqa: E402
from gdkvm.data.phantom.realism import compare, echonet_statistics  # noqa: E402
from gdkvm.data.synthetic import write_phantom  # noqa: E402
from gdkvm.utils.atomic import atomic_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--echonet", type=Path, help="measure this EchoNet-Dynamic folder instead")
    parser.add_argument("--limit", type=int, help="at most this many videos of --echonet")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "phantom" / "realism.csv")
    args = parser.parse_args()
    tables = []
    if args.echonet is not None:
        table = compare(echonet_statistics(args.echonet, args.limit))
        table.insert(0, "source", "echonet")
        tables.append(table)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for level in DIFFICULTIES:
                result = write_phantom(Path(tmp) / level, patients=args.patients, seed=args.seed,
                                       workers=args.workers, difficulty=level)
                table = compare(echonet_statistics(result.echonet_root))
                table.insert(0, "source", f"phantom-{level}")
                tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_path:
        out.to_csv(tmp_path, index=False, float_format="%.4g")
    print(out.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
