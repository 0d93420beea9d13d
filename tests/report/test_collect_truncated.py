"""report lists a truncated per_frame.csv under Missing/problems instead of using its partial numbers."""

from __future__ import annotations

from gdkvm.report.collect import _read_csv


def test_truncated_csv_is_listed(tmp_path):
    good = "video,frame,dice\na,0,0.9\na,1,0.8\n"
    path = tmp_path / "per_frame.csv"
    path.write_text(good)
    missing: list[str] = []
    assert len(_read_csv(path, missing, "per-frame table", ("video", "frame", "dice"))) == 2 and missing == []
    path.write_text(good + "b,0")  # killed mid-row
    assert _read_csv(path, missing, "per-frame table", ("video", "frame", "dice")) is None
    assert len(missing) == 1 and "per_frame.csv" in missing[0] and "truncated" in missing[0]
