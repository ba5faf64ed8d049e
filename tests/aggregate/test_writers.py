"""The files of a report: tidy CSV, provenance, LaTeX, chart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fader_lightning.aggregate import aggregate
from fader_lightning.errors import ConfigError
from sweeps import METRICS, Sweep, read_csv


def test_csv_means_and_std_match_numpy(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, sweep = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results", include_aupro=True)
    table = read_csv(paths["csv"])
    assert len(table) == 2 * 2 * 2 * 3
    for (category, masking, stage), runs in sweep.values.items():
        for metric in METRICS:
            values = [run[metric] for run in runs]
            line = table[category, masking, stage, metric]
            assert float(line["mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert int(line["n"]) == len(values)
            assert line["status"] == "ok"
            if len(values) > 1:
                assert float(line["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            else:
                assert line["std"] == ""
    assert int(table["bottle", "saliency", "ear", "image_auroc"]["n"]) == 2


def test_provenance_lists_run_dirs_and_commits(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, sweep = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results")
    cells = json.loads(paths["provenance"].read_text())["cells"]
    assert len(cells) == 2 * 2 * 2
    csv_table = read_csv(paths["csv"])
    for cell in cells:
        key = (cell["category"], cell["masking"], cell["stage"])
        expected = sweep.runs[key]
        assert sorted((run["run_dir"], run["git_commit"]) for run in cell["runs"]) == sorted(expected)
        assert all(run["overrides"][0] == f"data.category={key[0]}" for run in cell["runs"])
        line = csv_table[(*key, "image_auroc")]
        assert line["run_dirs"] == ";".join(run["run_dir"] for run in cell["runs"])
        assert line["git_commits"] == ";".join(run["git_commit"] for run in cell["runs"])
        assert line["seeds"] == ";".join(str(run["seed"]) for run in cell["runs"])


def test_all_files_written(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, _ = complete
    out = tmp_path / "results"
    paths = aggregate(dirs, "main", out_root=out, include_aupro=True)
    names = {"table.md", "table.csv", "table.tex", "chart.png", "chart.pdf", "chart.svg", "provenance.json"}
    assert {path.name for path in paths.values()} == names
    assert {path.name for path in (out / "main").iterdir()} == names  # no temporary files left behind
    with Image.open(paths["chart"]) as chart:
        assert chart.format == "PNG"
        assert 400 <= chart.width <= 4000 and 300 <= chart.height <= 1000
        assert len(chart.convert("RGB").getcolors(1 << 16)) > 4  # bars, text and legend were drawn
    assert paths["chart_pdf"].read_bytes().startswith(b"%PDF") and b"<svg" in paths["chart_svg"].read_bytes()
    svg = paths["chart_svg"].read_text()
    assert "bottle" in svg and "grid" in svg  # the categories are text in the vector file
    latex = paths["latex"].read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert "bottle" in latex and "grid" in latex and "EAR+FADeR" in latex and "AUPRO" in latex
    assert "AUPRO" in paths["markdown"].read_text()


def test_no_variant_keeps_the_csv_columns(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, _ = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results")
    with paths["csv"].open(newline="") as handle:
        header = next(csv.reader(handle))
    assert "variant" not in header
    assert all("variant" not in cell for cell in json.loads(paths["provenance"].read_text())["cells"])


def test_latex_bolds_the_best_per_metric_has_a_label_and_fits(
    complete: tuple[list[Path], Sweep], tmp_path: Path
) -> None:
    dirs, _ = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results", include_aupro=True)
    latex = paths["latex"].read_text()
    assert r"\label{tab:main}" in latex and r"\begin{adjustbox}{max width=\linewidth}" in latex
    rows = read_csv(paths["csv"])
    for category in ("bottle", "grid"):
        (line,) = [text for text in latex.splitlines() if text.startswith(category + " ")]
        cells = line.removesuffix(r" \\").split(" & ")[1:]
        for metric in ("image_auroc", "pixel_auroc", "aupro"):
            means = {key: float(row["mean"]) for key, row in rows.items() if key[0] == category and key[3] == metric}
            best = f"{100 * max(means.values()):.1f}"
            bold = [cell for cell in cells if cell.startswith(r"\textbf{" + best)]
            assert bold, (category, metric, best, cells)
        assert sum(cell.startswith(r"\textbf") for cell in cells) >= 3
    only = aggregate(dirs, "aupro_only", out_root=tmp_path / "results", include_aupro=True,
                     latex_metrics=["aupro"])["latex"].read_text()  # fmt: skip
    assert "AUPRO" in only and "I-AUROC" not in only
    with pytest.raises(ConfigError, match="selects no column"):
        aggregate(dirs, "none", out_root=tmp_path / "results", latex_metrics=["f1"])
