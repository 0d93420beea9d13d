"""report lists a truncated per_frame.csv under Missing/problems instead of using its partial numbers."""

from __future__ import annotations

import pytest

from gdkvm.engine.run_files import read_per_frame, read_table
from gdkvm.errors import DataError
from gdkvm.report.collect import read_eval


def test_truncated_csv_is_refused(tmp_path):
    good = "video,frame,dice\na,0,0.9\na,1,0.8\n"
    path = tmp_path / "per_frame.csv"
    path.write_text(good)
    assert len(read_table(path, "per-frame table", ("video", "frame", "dice"))) == 2
    assert len(read_per_frame(tmp_path)) == 2
    path.write_text(good + "b,0")  # killed mid-row
    with pytest.raises(DataError, match="per_frame.csv: per-frame table looks truncated"):
        read_per_frame(tmp_path)


def test_truncated_csv_is_listed_by_the_report(tmp_path):
    folder = tmp_path / "eval" / "test"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text('{"split": "test", "mode": "clean", "segmentation": {"overall": {}}}')
    (folder / "per_frame.csv").write_text("video,frame,dice\na,0,0.9\nb,0")
    missing: list[str] = []
    ev = read_eval(folder, missing)
    assert ev is not None and ev.per_frame is None and ev.split == "test"
    assert sum("per_frame.csv" in m and "truncated" in m for m in missing) == 1
    # the other absent files are each named once, with what the report loses
    assert any("ef.csv: EF table not found (no Bland-Altman" in m for m in missing)
    assert any("predictions.npy: not found (no qualitative overlays" in m for m in missing)
