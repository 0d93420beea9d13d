"""``gdkvm report`` on fixture runs: every table against its inputs, figures, HTML, Missing notes, CLI."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import GdkvmError
from gdkvm.report.build import build_report
from gdkvm.report.plots import gate_heatmap, overlay
from tests.report.fixtures import (
    fps_row,
    write_fps_csv,
    write_old_fps_csv,
    write_run,
    write_scaling_csv,
    write_store,
)

PAPER = Path(__file__).resolve().parents[2] / "gdkvm" / "report" / "paper"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()

EVALUATED = {"camus-full-tiny": "full", "camus-lkva-tiny": "lkva", "camus-delta-tiny": "delta",
             "real-full-tiny": "full", "echonet-gdr-tiny": "gdr"}
NOEVAL = "camus_wo-alpha_noeval"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Stores (phantom CAMUS, real-marked CAMUS, unmarked EchoNet), runs and benchmark CSVs."""
    base = tmp_path_factory.mktemp("report-inputs")
    phantom = write_store(base / "synthetic" / "prepared", "camus", phantom=True, seed=0)
    real = write_store(base / "real", "camus", phantom=False, seed=3)
    echonet = write_store(base / "unmarked", "echonet", phantom=None, seed=4)
    runs = base / "runs"
    write_run(runs, "camus-full-tiny", phantom, "full", seed=0, quality=0.9)
    write_run(runs, "camus-lkva-tiny", phantom, "lkva", seed=1, quality=0.8)
    write_run(runs, "camus-delta-tiny", phantom, "delta", seed=2, quality=0.7, gates=False)
    write_run(runs, "real-full-tiny", real, "full", seed=5)
    write_run(runs, "echonet-gdr-tiny", echonet, "gdr", seed=6)
    write_run(runs, NOEVAL, phantom, "wo-alpha", evaluate=False, finished=False)
    bench = base / "bench"
    write_fps_csv(bench, [
        fps_row("full", fps=50.0, batch=1, dtype="fp32", mode="model-only", params=2_000_000),
        fps_row("full", fps=400.0, batch=16, dtype="fp32", mode="model-only", params=2_000_000),
        fps_row("full", fps=80.0, batch=1, dtype="bf16", mode="model-only", params=2_000_000),
        fps_row("full", fps=30.0, batch=1, dtype="fp32", mode="end-to-end", params=2_000_000),
        fps_row("delta", fps=60.0, batch=1, dtype="fp32", mode="end-to-end", params=1_900_000),
        fps_row("delta", fps=70.0, batch=1, dtype="fp32", mode="model-only", params=1_900_000),
        fps_row("delta", fps=1.0, batch=1, dtype="fp32", mode="model-only", status="oom"),
    ])
    write_scaling_csv(bench, {"gdr": 0.0, "softmax": 0.05})
    write_old_fps_csv(bench / "old" / "fps-old-format.csv", schema_version=0)
    write_old_fps_csv(bench / "fps-no-schema.csv", schema_version=None)
    write_old_fps_csv(bench / "fps-lacking.csv", schema_version=1, drop=("frames_per_s",))
    return {"runs": runs, "bench": bench, "phantom": phantom, "real": real, "echonet": echonet, "base": base}


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out") / "report"
    result = build_report(inputs["runs"], out, bench_dir=inputs["bench"], paper_dir=PAPER)
    return result


def _table(report, name: str) -> pd.DataFrame:
    return pd.read_csv(report.out_dir / "tables" / f"{name}.csv")


def _eval_dir(inputs, run: str) -> Path:
    return inputs["runs"] / run / "eval" / "test"


def _finite_mean(values) -> float:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return float(arr[np.isfinite(arr)].mean())


# ------------------------------------------------------------------------------ tables


def test_table1_our_rows_equal_the_per_frame_means(report, inputs):
    t1 = _table(report, "table1_segmentation")
    for run in EVALUATED:
        rows = t1[t1["method"].str.startswith(f"ours: {run} (")]
        assert len(rows) == 1, run
        row = rows.iloc[0]
        frames = pd.read_csv(_eval_dir(inputs, run) / "per_frame.csv")
        assert row["mdice"] == pytest.approx(100 * _finite_mean(frames["dice"]), abs=1e-9)
        assert row["miou"] == pytest.approx(100 * _finite_mean(frames["iou"]), abs=1e-9)
        assert row["hd"] == pytest.approx(_finite_mean(frames["hd95"]), abs=1e-9)
        assert row["asd"] == pytest.approx(_finite_mean(frames["asd"]), abs=1e-9)
        assert row["eval"] == "test/clean"
    assert not t1["method"].str.contains(NOEVAL).any()
    echonet = t1[t1["method"].str.startswith("ours: echonet-gdr-tiny")].iloc[0]
    assert echonet["dataset"] == "EchoNet-Dynamic"


def test_table1_paper_rows_equal_the_paper_csv(report):
    t1 = _table(report, "table1_segmentation")
    paper = pd.read_csv(PAPER / "table1_segmentation.csv")
    column = {"mDice": "mdice", "mIoU": "miou", "HD": "hd", "ASD": "asd"}
    for _, p in paper.iterrows():
        row = t1[(t1["method"] == p["method"]) & (t1["dataset"] == p["dataset"])]
        assert len(row) == 1, (p["method"], p["dataset"])
        assert row.iloc[0][column[p["metric"]]] == pytest.approx(p["value"])
        assert row.iloc[0]["source"] == f"paper ({p['venue']})"


def test_table2_ef_rows_match_ef_csv_under_both_definitions(report, inputs):
    t2 = _table(report, "table2_ef_camus")
    ef = pd.read_csv(_eval_dir(inputs, "camus-full-tiny") / "ef.csv")
    ours = t2[t2["method"].str.startswith("ours: camus-full-tiny (")]
    for method, group in ef.groupby("method"):
        g = group[np.isfinite(group["ef_pred"]) & np.isfinite(group["ef_ref"])]
        d = g["ef_pred"].to_numpy() - g["ef_ref"].to_numpy()
        row = ours[(ours["ef_method"] == method) & ours["reference"].str.startswith("reference masks")]
        assert len(row) == 1, method
        row = row.iloc[0]
        assert row["n"] == len(g)
        assert row["bias"] == pytest.approx(d.mean(), abs=1e-9)
        assert row["sd"] == pytest.approx(d.std(ddof=1), abs=1e-9)
        assert row["memsam_bias"] == pytest.approx(np.abs(d).mean(), abs=1e-9)
        assert row["memsam_std"] == pytest.approx(g["ef_pred"].std(ddof=0), abs=1e-9)
        assert row["corr"] == pytest.approx(np.corrcoef(g["ef_pred"], g["ef_ref"])[0, 1], abs=1e-9)
    paper = pd.read_csv(PAPER / "table2_ef_camus.csv")
    column = {"corr": "corr", "bias_pct": "paper_bias", "std_pct": "paper_std"}
    for _, p in paper.iterrows():
        row = t2[t2["method"] == p["method"]].iloc[0]
        assert row[column[p["metric"]]] == pytest.approx(p["value"])
    assert not t2["method"].str.contains("echonet-gdr-tiny").any()
    md = (report.out_dir / "tables" / "table2_ef_camus.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "| bias ± SD |" in header and "| MemSAM bias ± std |" in header and "| paper bias ± std |" in header
    assert "'bias ± SD' = standard Bland-Altman" in md  # the legend of the short headers


def test_table2_has_the_method_bias_row_beside_each_dataset_ef_comparison(report, inputs):
    t2 = _table(report, "table2_ef_camus")
    ef = pd.read_csv(_eval_dir(inputs, "camus-full-tiny") / "ef.csv")
    ours = t2[t2["method"].str.startswith("ours: camus-full-tiny (")].reset_index(drop=True)
    for method, group in ef.groupby("method"):
        rows = ours[ours["ef_method"] == method]
        dataset = rows[rows["reference"].str.startswith("dataset EF")]
        if dataset.empty:
            continue
        bias = rows[rows["reference"].str.startswith("method bias: reference masks vs dataset EF")]
        assert len(bias) == 1, method
        assert bias.index[0] == dataset.index[0] + 1  # the next row, beside the comparison it explains
        g = group[np.isfinite(group["ef_ref"]) & np.isfinite(group["ef_manifest"])]
        d = g["ef_ref"].to_numpy() - g["ef_manifest"].to_numpy()
        assert bias.iloc[0]["n"] == len(g)
        assert bias.iloc[0]["bias"] == pytest.approx(d.mean(), abs=1e-9)
        assert bias.iloc[0]["sd"] == pytest.approx(d.std(ddof=1), abs=1e-9)
    assert "method bias" in (report.out_dir / "tables" / "table2_ef_camus.md").read_text()


def test_fig5_draws_phantom_and_cpu_points_apart_from_the_paper(inputs):
    from matplotlib.collections import PathCollection

    from gdkvm.report.collect import collect
    from gdkvm.report.plots import FIG5_GROUPS, draw_fig5, fig5_points

    data = collect(inputs["runs"], inputs["bench"], PAPER)
    points = fig5_points(data, [])
    by_group = {p["group"] for p in points}
    assert "paper" in by_group and "not-comparable" in by_group
    for p in points:
        if p["ours"]:  # the fixture runs are phantom (or unmarked) stores, timed on a "Test CPU"
            assert p["group"] == "not-comparable" and "CPU" in p["why"], p["label"]
    fig = draw_fig5(points)
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in scatters] == [p["group"] for p in points]
    paper = [c for c in scatters if c.get_label() == "paper"]
    ours = [c for c in scatters if c.get_label() == "not-comparable"]
    assert all(c.get_hatch() == "////" for c in ours) and all(not c.get_hatch() for c in paper)
    paper_path = paper[0].get_paths()[0].vertices
    assert all(not np.array_equal(c.get_paths()[0].vertices, paper_path) for c in ours)  # another marker
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert FIG5_GROUPS["paper"][0] in legend and FIG5_GROUPS["not-comparable"][0] in legend


def test_table5_holds_echonet_runs_only(report):
    t5 = _table(report, "table5_ef_echonet")
    ours = t5[t5["method"].str.startswith("ours:")]
    assert set(ours["method"].str.extract(r"ours: (\S+) ")[0]) == {"echonet-gdr-tiny"}
    assert set(ours["ef_method"]) >= {"single-plane-simpson"}
    gdkvm = t5[t5["method"] == "GDKVM"].iloc[0]
    assert gdkvm["corr"] == pytest.approx(0.872)


def test_table3_matches_runs_by_variant_name(report, inputs):
    t3 = _table(report, "table3_ablation_components")
    paper = pd.read_csv(PAPER / "table3_ablation_components.csv")
    assert set(t3["variant"]) == set(paper["variant"])
    full = t3[t3["variant"] == "full"]
    assert set(full["run"]) == {"camus-full-tiny", "real-full-tiny"}
    for _, row in full.iterrows():
        summary = json.loads((_eval_dir(inputs, row["run"]) / "summary.json").read_text())
        assert row["mdice"] == pytest.approx(100 * summary["segmentation"]["overall"]["dice"]["mean"])
        assert row["paper_mdice"] == pytest.approx(95.11)
    assert t3[t3["variant"] == "lkva"]["run"].tolist() == ["camus-lkva-tiny"]
    assert t3[t3["variant"] == "lkva-kpff"]["run"].tolist() == ["-"]
    assert t3[t3["variant"] == "lkva-kpff"]["mdice"].isna().all()


def test_table4_takes_inference_time_from_the_matching_fps_row(report, inputs):
    t4 = _table(report, "table4_ablation_update_rules")
    paper = pd.read_csv(PAPER / "table4_ablation_update_rules.csv")
    assert t4["variant"].tolist() == list(dict.fromkeys(paper["variant"]))
    delta = t4[t4["variant"] == "delta"].iloc[0]
    assert delta["run"] == "camus-delta-tiny"
    # batch 1, fp32, model-only and status ok: the 70 FPS row, not the end-to-end or failed one
    assert delta["fps"] == pytest.approx(70.0)
    assert delta["ms_per_frame"] == pytest.approx(1e3 / 70.0, rel=1e-5)
    assert delta["paper_ms"] == pytest.approx(155.09)
    gdr = t4[t4["variant"] == "gdr"]  # the only gdr run is on EchoNet; the paper's row is CAMUS
    assert gdr["run"].tolist() == ["-"] and gdr["ms_per_frame"].isna().all()
    linear = t4[t4["variant"] == "linear"].iloc[0]
    assert linear["run"] == "-" and np.isnan(linear["mdice"]) and np.isnan(linear["ms_per_frame"])
    md = (report.out_dir / "tables" / "table4_ablation_update_rules.md").read_text()
    linear_line = next(line for line in md.splitlines() if line.startswith("| linear |"))
    assert linear_line.count("| - |") >= 1


def test_latex_and_markdown_escape_their_cells(report):
    tex = (report.out_dir / "tables" / "runs.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "camus\\_wo-alpha\\_noeval" in tex
    t2 = (report.out_dir / "tables" / "table2_ef_camus.tex").read_text()
    assert "$\\pm$" in t2 and "±" not in t2
    md = (report.out_dir / "tables" / "table2_ef_camus.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.count("|") == 10  # 9 columns


def test_data_provenance_is_labelled(report):
    t1 = _table(report, "table1_segmentation")
    source = dict(zip(t1["method"].str.extract(r"ours: (\S+) ")[0], t1["source"], strict=True))
    assert source["camus-full-tiny"] == "synthetic phantom (CAMUS format)"
    assert source["real-full-tiny"] == "CAMUS"
    assert "provenance unknown" in source["echonet-gdr-tiny"]
    md = (report.out_dir / "tables" / "table1_segmentation.md").read_text()
    assert "synthetic phantom (CAMUS format)" in md and "NOT results on the real dataset" in md
    page = report.report_md.read_text()
    assert "Synthetic data" in page


# ------------------------------------------------------------------------------ figures and pages


def test_figures_exist_and_decode(report):
    names = {p.name for p in report.figures}
    expected = {"fig5_fps_vs_dice.png", "fig6_ef_camus-full-tiny.png", "fig6_ef_echonet-gdr-tiny.png",
                "fig7_overlays_camus-full-tiny.png", "fig9_gates_camus-full-tiny.png", "curves_all.png",
                "curves_camus-full-tiny.png", "scaling.png", "fig9_gates_by_variant.png"}
    assert expected <= names
    assert "fig9_gates_camus-delta-tiny.png" not in names  # that run logged no gates
    on_disk = {p.name for p in (report.out_dir / "figures").iterdir()}
    assert on_disk == names
    for path in report.figures:
        assert path.stat().st_size > 0
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 3 and min(image.shape[:2]) > 100, path.name


def test_html_is_self_contained(report):
    page = report.index_html.read_text(encoding="utf-8")
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(report.figures)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "<h2 id=\"missing\">Missing</h2>" in page
    assert "synthetic phantom (CAMUS format)" in page


def test_report_md_links_every_figure(report):
    text = report.report_md.read_text(encoding="utf-8")
    for path in report.figures:
        assert f"](figures/{path.name})" in text
    assert "## Missing" in text


def test_missing_notes_name_what_is_missing_and_the_rest_builds(report):
    notes = "\n".join(report.missing)
    assert f"{NOEVAL}: no evaluation" in notes
    assert f"{NOEVAL}: training not finished" in notes
    assert "fps-old-format.csv: fps benchmark schema_version 0" in notes
    assert "fps-no-schema.csv: benchmark CSV from an older format" in notes
    assert "fps-lacking.csv: fps benchmark CSV lacks column(s) frames_per_s" in notes
    page = report.report_md.read_text(encoding="utf-8")
    missing_section = page.split("## Missing", 1)[1].split("## Tables", 1)[0]
    assert NOEVAL in missing_section and "fps-old-format.csv" in missing_section
    manifest = json.loads((report.out_dir / "report.json").read_text())
    assert manifest["missing"] == report.missing
    assert report.runs == 6 and report.evaluated_runs == 5
    bench = _table(report, "bench_fps")  # lists every fps row that was read, of any variant
    assert "fps-old-format.csv" not in set(bench["file"]) and 5.0 not in set(bench["fps"])


def test_gate_heatmap_redistributes_histograms():
    gates = pd.DataFrame({"iteration": [1, 2], "min": [0.0, 0.5], "max": [1.0, 1.0],
                          "hist": [[0.0, 10.0], [4.0, 4.0]]})
    density, columns, values = gate_heatmap(gates, bins=4)
    assert values[0] == 0.0 and values[-1] == 1.0 and columns.size == 3
    # step 1: all mass in [0.5, 1]; step 2: [0.5, 0.75] and [0.75, 1] equally
    np.testing.assert_allclose(density[:, 0], [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(density[:, 1], [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(density.sum(axis=0), 1.0)


def test_overlay_colours():
    image = np.zeros((1, 4), np.uint8)
    gt = np.array([[True, True, False, False]])
    pred = np.array([[False, True, True, False]])
    rgb = overlay(image, gt, pred).astype(int)
    r, g, b = rgb[0, 0]
    assert b > g > r == 0  # gt only: blue
    r, g, b = rgb[0, 2]
    assert r > g > b == 0  # prediction only: orange (no green-vs-red pair)
    assert rgb[0, 1, 0] == rgb[0, 1, 1] == rgb[0, 1, 2] > 0  # overlap: white
    assert (rgb[0, 3] == 0).all()
    # the two single-mask colours differ in lightness too (not only in hue)
    lum = [0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] for c in (rgb[0, 0], rgb[0, 2])]
    assert abs(lum[0] - lum[1]) > 20


# ------------------------------------------------------------------------------ bad inputs


def test_empty_runs_folder_still_builds_the_paper_tables(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    result = build_report(runs, tmp_path / "out", bench_dir=tmp_path / "no-bench", paper_dir=PAPER)
    assert any("no run folders" in m for m in result.missing)
    assert any("benchmark folder not found" in m for m in result.missing)
    t1 = pd.read_csv(result.out_dir / "tables" / "table1_segmentation.csv")
    assert len(t1) == len(pd.read_csv(PAPER / "table1_segmentation.csv")) // 4
    assert result.index_html.is_file() and "Missing" in result.report_md.read_text()
    assert [p.name for p in result.figures] == ["fig5_fps_vs_dice.png"]


def test_out_dir_that_is_not_a_report_is_left_alone(tmp_path, inputs):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GdkvmError, match="not an earlier report"):
        build_report(inputs["runs"], out, bench_dir=inputs["bench"], paper_dir=PAPER)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(GdkvmError, match="runs folder not found"):
        build_report(tmp_path / "nope", tmp_path / "out")


def test_cli_builds_and_prints_missing(inputs, tmp_path):
    out = tmp_path / "report"
    args = ["report", "--runs", str(inputs["runs"]), "--out", str(out), "--bench", str(inputs["bench"]),
            "--paper", str(PAPER)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "index.html" in result.output and "missing" in result.output
    assert NOEVAL in result.output and "fps-old-format.csv" in result.output
    assert (out / "index.html").is_file() and (out / "tables" / "table1_segmentation.tex").is_file()
    again = runner.invoke(app, args)  # an earlier report is replaced
    assert again.exit_code == 0, again.output


def test_cli_missing_runs_folder_is_one_line_exit_1(tmp_path):
    result = runner.invoke(app, ["report", "--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "runs folder not found" in lines[0]
    assert not (tmp_path / "o").exists()


def test_ablation_summaries_beside_the_runs_become_a_table(tmp_path):
    from gdkvm.engine.ablate import SUMMARY_COLUMNS

    runs = tmp_path / "runs"
    runs.mkdir()
    row = {c: "" for c in SUMMARY_COLUMNS}
    good = [dict(row, table=4, dataset="camus", preset="tiny", variant="delta", paper_row="Sanity Check",
                 paper_mdice=74.68, key_scale="none", n_seeds=3, seeds="0 1 2", n_patients=10, mdice=61.5,
                 mdice_sd=4.2, reference="gdr (none)", diff=-30.25, diff_ci_low=-35.0, diff_ci_high=-25.5,
                 resolved=True),
            dict(row, table=4, dataset="camus", preset="tiny", variant="linear", paper_row="Baseline",
                 paper_mdice=93.3, key_scale="none", n_seeds=3, seeds="0 1 2", n_patients=10, mdice=90.1,
                 mdice_sd=0.4, reference="gdr (none)", diff=-0.2, diff_ci_low=-0.6, diff_ci_high=0.3,
                 resolved=False)]
    pd.DataFrame(good, columns=list(SUMMARY_COLUMNS)).to_csv(runs / "ablation-table4-camus-tiny.csv", index=False)
    pd.DataFrame([{"variant": "x"}]).to_csv(runs / "ablation-table3-camus-tiny.csv", index=False)
    result = build_report(runs, tmp_path / "out", bench_dir=tmp_path / "no-bench", paper_dir=PAPER)
    table = pd.read_csv(result.out_dir / "tables" / "ablation_seeds.csv")
    assert list(table["variant"]) == ["delta", "linear"]
    assert list(table["resolved"]) == ["yes", "no"]
    assert table.loc[0, "diff"] == pytest.approx(-30.25)
    assert any("ablation-table3-camus-tiny.csv" in m and "without column" in m for m in result.missing)
    assert "Ablations over seeds and key stabilisers" in result.report_md.read_text()


def test_provenance_comes_only_from_what_the_writers_record(tmp_path):
    """store.json's 'phantom' flag, else config.yaml's copy of it; a marker file beside the store is no evidence."""
    import shutil

    from gdkvm.report.collect import read_run

    runs = tmp_path / "runs"
    flagged = write_store(tmp_path / "flagged", "camus", phantom=True, seed=0)
    unflagged = write_store(tmp_path / "unflagged", "camus", phantom=None, seed=1)
    (tmp_path / "unflagged" / "phantom_truth.json").write_text("{}")  # a phantom marker, not a recorded flag
    a = write_run(runs, "a", flagged, evaluate=False)
    b = write_run(runs, "b", unflagged, evaluate=False)
    missing: list[str] = []
    src_a, src_b = read_run(a, missing).source, read_run(b, missing).source
    assert src_a.phantom is True and src_a.evidence == "store.json 'phantom': true"
    assert src_b.phantom is None and "provenance unknown" in src_b.label
    shutil.rmtree(flagged)  # the store is gone: the flag recorded at train time still labels the run
    src_a = read_run(a, missing).source
    assert src_a.store_dir is None and src_a.phantom is True
    assert src_a.label == "synthetic phantom (CAMUS format)" and "config.yaml 'store.phantom'" in src_a.evidence


def test_gate_sample_reproduces_the_logged_histograms():
    from gdkvm.report.plots import gate_sample

    gates = pd.DataFrame({"min": [0.0, 2.0], "max": [1.0, 2.0], "hist": [[0.0, 10.0, 30.0, 0.0], [5.0]]})
    values = gate_sample(gates, points=40)
    first, second = values[values < 1.5], values[values >= 1.5]
    assert first.size == 40 and second.size == 40 and (second == 2.0).all()
    assert ((first >= 0.25) & (first <= 0.75)).all()  # only the two non-empty bins
    assert (first < 0.5).sum() == 10 and (first >= 0.5).sum() == 30  # in proportion to their counts


def test_figures_use_a_fixed_style_whatever_the_user_rc(tmp_path):
    """A user's matplotlibrc (simulated by changed rcParams) changes nothing inside figure_style, and
    the seaborn figures are written and non-empty."""
    import matplotlib as mpl
    import seaborn as sns

    from gdkvm.report.plots import _difference_density, _new_figure
    from gdkvm.report.style import THEME, figure_style

    seen = []
    for user in ({"axes.facecolor": "red", "font.size": 31.0, "lines.linewidth": 9.0}, {}):
        with mpl.rc_context(user):
            with figure_style():
                seen.append({k: mpl.rcParams[k] for k in ("axes.facecolor", "font.size", "lines.linewidth",
                                                          "axes.prop_cycle", "savefig.facecolor")})
            assert all(mpl.rcParams[k] == v for k, v in user.items())  # restored afterwards
    assert seen[0] == seen[1]
    assert seen[0]["axes.facecolor"] == "white" and seen[0]["savefig.facecolor"] == "white"
    assert seen[0]["axes.prop_cycle"].by_key()["color"][0] == sns.color_palette(THEME["palette"])[0]
    # the Bland-Altman density panel draws a filled kde of the differences
    with figure_style():
        fig = _new_figure(4, 3)
        ba, side = fig.subplots(1, 2)
        ba.set_ylim(-10, 10)
        _difference_density(side, ba, np.array([-3.0, -1.0, 0.5, 1.0, 2.5, 4.0]))
        assert side.collections and side.get_ylim() == ba.get_ylim()


def test_gates_by_variant_is_a_seaborn_violin_figure(report, inputs):
    from gdkvm.report.collect import collect
    from gdkvm.report.plots import final_gate_table

    data = collect(inputs["runs"], inputs["bench"], PAPER)
    table = final_gate_table(data.runs)
    assert set(table["gate"]) == {"alpha", "beta"}
    # runs that logged gates, by variant; the delta run logged none
    assert set(table["variant"]) == {"full", "lkva", "gdr", "wo-alpha"} and "camus-delta-tiny" not in set(table["run"])
    assert table["value"].between(0, 1).all()
    path = report.out_dir / "figures" / "fig9_gates_by_variant.png"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape[1] > 500


class _TableCells(HTMLParser):
    """Every <table> of a page as rows of (text, kind) cells; kind is ``head``, ``num`` or ``text``, and a
    <br> inside a cell is a newline."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, str]]]] = []
        self._cell: list[str] | None = None
        self._kind = "text"

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
            self._kind = "head" if tag == "th" else "num" if dict(attrs).get("class") == "num" else "text"
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell), self._kind))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


#: A conservative width of one character of table text (Helvetica/Arial/Segoe average for mixed text
#: is about 0.5-0.55 em) and of the "0" glyph that defines the CSS ch unit (0.556 em in Helvetica/Arial).
CHAR_EM = 0.62
ZERO_EM = 0.6


def _cell_width(text: str, kind: str) -> float:
    """Upper bound of a cell's laid-out text width (px): a number is as wide as its longest line; text
    wraps between words at the CSS max-width (WRAP_CH, HEADER_CH for headers), but never below its
    longest word (the CSS breaks words only when they overflow)."""
    from gdkvm.report.html import HEADER_CH, TABLE_FONT_PX, WRAP_CH

    char = CHAR_EM * TABLE_FONT_PX
    lines = [line.strip() for line in text.split("\n")]
    if kind == "num":
        return max(len(line) for line in lines) * char
    cap = (HEADER_CH if kind == "head" else WRAP_CH) * ZERO_EM * TABLE_FONT_PX
    longest_word = max((len(w) for line in lines for w in line.split()), default=0) * char
    return max(longest_word, min(max(len(line) for line in lines) * char, cap))


def _estimated_width(rows: list[list[tuple[str, str]]]) -> float:
    """Width in px of a table laid out by the page's CSS: the sum of its widest cells plus padding."""
    from gdkvm.report.html import CELL_PAD_EM, TABLE_FONT_PX

    columns: dict[int, float] = {}
    for row in rows:
        for i, (text, kind) in enumerate(row):
            width = _cell_width(text, kind) + 2 * CELL_PAD_EM * TABLE_FONT_PX + 1
            columns[i] = max(columns.get(i, 0.0), width)
    return sum(columns.values())


def test_html_tables_fit_a_1400_px_window(report):
    from gdkvm.report.html import HEADER_CH, PAGE_PAD_PX, PAGE_PX, TABLE_FONT_PX, WRAP_CH

    page = report.index_html.read_text(encoding="utf-8")
    # the geometry the estimate uses is the one the page's CSS sets
    assert f"max-width: {PAGE_PX}px" in page and f"font-size: {TABLE_FONT_PX}px" in page
    assert f"max-width: {WRAP_CH}ch" in page and f"max-width: {HEADER_CH}ch" in page and PAGE_PX <= 1400
    parser = _TableCells()
    parser.feed(page)
    titles = re.findall(r'<h3 id="([^"]+)">[^<]*</h3>\s*<p class="caption">', page)
    assert len(parser.tables) == len(titles) >= 8
    content = PAGE_PX - 2 * PAGE_PAD_PX
    widths = {name: _estimated_width(rows) for name, rows in zip(titles, parser.tables, strict=True)}
    table2 = parser.tables[titles.index("table2-ef-camus")]
    assert len(table2[0]) <= 9 and len(table2) > 3  # header + paper rows + ours
    assert all(w < content for w in widths.values()), {k: round(v) for k, v in widths.items()}
