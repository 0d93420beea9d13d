"""`gdkvm ablate`: every row of a paper table is trained and evaluated, and a rerun skips finished rows."""

import math

import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.engine.ablate import TABLES, row_run_name, run_ablation, table_variants
from gdkvm.engine.config import TrainConfig
from gdkvm.errors import ConfigError


def test_tables_name_registered_variants_with_paper_numbers():
    from gdkvm.models.registry import get_variant

    assert TABLES[3] == ("lkva", "lkva-kpff", "lkva-gdr", "full")
    assert TABLES[4] == ("linear", "delta", "wo-alpha", "wo-beta", "gdr")
    for table, variants in TABLES.items():
        for variant in variants:
            spec = get_variant(variant)
            assert spec.paper_table == f"Table {table}" and spec.paper_mdice is not None
    with pytest.raises(ConfigError):
        table_variants(5)


def test_table3_rows_run_once_and_are_skipped_afterwards(prepared_store, tmp_path):
    base = TrainConfig(data=str(prepared_store), iterations=1, batch_size=1, device="cpu")
    rows = run_ablation(3, prepared_store, preset="tiny", out=tmp_path, base=base, n_boot=20)
    assert [r.variant for r in rows] == list(TABLES[3])
    assert all(r.status == "new" for r in rows)
    assert all(0.0 <= r.dice <= 1.0 and not math.isnan(r.hd95) for r in rows)
    assert [r.paper_mdice for r in rows] == [93.10, 93.30, 94.49, 95.11]
    for r in rows:
        assert r.run_dir.name == row_run_name(3, "camus", r.variant, "tiny")
        assert (r.run_dir / "eval" / "test" / "summary.json").is_file()

    # an interrupted row: its evaluation is gone, so only that row is evaluated again
    (rows[1].run_dir / "eval" / "test" / "summary.json").unlink()
    result = CliRunner().invoke(app, ["ablate", "--table", "3", "--data", str(prepared_store), "--preset", "tiny",
                                      "--iterations", "1", "--batch-size", "1", "--device", "cpu",
                                      "--out", str(tmp_path), "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert "lkva-kpff: new" in result.output and "lkva: done earlier" in result.output
    for text in ("paper mDice", "our mDice", "93.10", "95.11", "LKVA"):
        assert text in result.output, text
