"""Cells, seeds and variants of the table, against numpy on the values the fake sweeps wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fader_lightning.aggregate import aggregate, build_table, collect
from sweeps import METRICS, Sweep, label, markdown_rows, read_variant_csv


def test_markdown_has_one_row_per_category_and_mean_of_means(
    complete: tuple[list[Path], Sweep], tmp_path: Path
) -> None:
    dirs, sweep = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results")
    rows = markdown_rows(paths["markdown"].read_text())
    assert list(rows) == ["bottle", "grid", "mean"]
    assert len(rows["mean"]) == 1 + 2 * 2 * 2  # category + masking × stage × (image, pixel AUROC)
    for masking in ("checkerboard", "saliency"):
        for stage in ("ear", "fader"):
            for metric in ("image_auroc", "pixel_auroc"):
                per_category = [
                    np.mean([run[metric] for run in sweep.values[c, masking, stage]]) for c in ("bottle", "grid")
                ]
                assert rows["mean"][label(masking, stage, metric)] == f"{100 * np.mean(per_category):.1f}"
                grid = sweep.values["grid", masking, stage][0][metric]
                assert rows["grid"][label(masking, stage, metric)] == f"{100 * grid:.1f}"
    seeds = [run["image_auroc"] for run in sweep.values["bottle", "saliency", "ear"]]
    expected = f"{100 * np.mean(seeds):.1f}±{100 * np.std(seeds, ddof=1):.1f}"
    assert rows["bottle"][label("saliency", "ear", "image_auroc")] == expected


def test_partial_seeds_are_marked(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path / "sweep")
    sweep.job("bottle", "saliency", seed=0, stages={"ear": "ok"})
    sweep.job("bottle", "saliency", seed=1, stages={"ear": "failed"})
    table = build_table(collect([sweep.root]))
    stat = table.cell("bottle", "saliency", "ear").stat("image_auroc")
    assert (stat.n, stat.status) == (1, "partial")
    assert table.cell("bottle", "saliency", "ear").status == "partial"


def test_not_applicable_cells_show_na_and_keep_the_mean_complete(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path / "sweep")
    for category in ("a", "b"):
        sweep.job(category, "random_multi", stages={"ear": "ok", "fader": "not_applicable"})
    paths = aggregate([sweep.root], "na", out_root=tmp_path / "results")
    rows = markdown_rows(paths["markdown"].read_text())
    fader_cell = label("random_multi", "fader", "image_auroc")
    ear_cell = label("random_multi", "ear", "image_auroc")
    assert rows["a"][fader_cell] == "n/a" and rows["mean"][fader_cell] == "n/a"
    assert not rows["mean"][ear_cell].endswith("*")


def test_ablation_variants_are_separate_cells(ablation: Sweep, tmp_path: Path) -> None:
    paths = aggregate([ablation.root], "ablation", out_root=tmp_path / "results", include_aupro=True)
    with paths["csv"].open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:5] == ["category", "masking", "variant", "stage", "metric"]
    table = read_variant_csv(paths["csv"])
    assert len(table) == 2 * 2 * 2 * 3  # category × variant × stage × metric
    assert {key[2] for key in table} == {"fader.patch_size=4", "fader.patch_size=8"}  # image_size is constant
    for (category, masking, stage, variant), runs in ablation.variant_values.items():
        assert len(runs) == 2
        for metric in METRICS:
            values = [run[metric] for run in runs]
            line = table[category, masking, variant.split()[0], stage, metric]
            assert float(line["mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(line["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert (line["n"], line["status"], line["seeds"]) == ("2", "ok", "0;1")
    rows = markdown_rows(paths["markdown"].read_text())
    assert list(rows) == ["bottle", "grid", "mean"]
    assert len(rows["mean"]) == 1 + 2 * 2 * 3  # category + variant × stage × metric
    runs = ablation.variant_values[
        "grid", "saliency", "fader", "fader.patch_size=8 data.image_size=128 reuse_stage1=true"
    ]
    values = [run["image_auroc"] for run in runs]
    expected = f"{100 * np.mean(values):.1f}±{100 * np.std(values, ddof=1):.1f}"
    assert rows["grid"]["saliency [fader.patch_size=8] EAR+FADeR I-AUROC"] == expected
    cells = json.loads(paths["provenance"].read_text())["cells"]
    assert len(cells) == 2 * 2 * 2
    assert {(c["category"], c["variant"], c["stage"], len(c["runs"])) for c in cells} == {
        (category, f"fader.patch_size={size}", stage, 2)
        for category in ("bottle", "grid")
        for size in (4, 8)
        for stage in ("ear", "fader")
    }
    assert all(f"fader.patch_size={c['variant'][-1]}" in run["overrides"] for c in cells for run in c["runs"])
    latex = paths["latex"].read_text()
    assert r"\multicolumn{6}{c}{[fader.patch\_size=4]}" in latex


def test_the_figures_at_the_calibrated_threshold_are_a_column_group_of_their_own(
    complete: tuple[list[Path], Sweep], tmp_path: Path
) -> None:
    from fader_lightning.aggregate.table import OPERATING_POINT_LABELS

    dirs, _ = complete
    written = {}
    for path in sorted(Path(dirs[0]).rglob("metrics.json")):  # as a test pass writes them, beside the AUROCs
        results = json.loads(path.read_text())
        for stage, entry in results.items():
            entry["metrics"].update({key: 0.01 * (i + 1) for i, key in enumerate(OPERATING_POINT_LABELS)})
            written[entry["category"], entry["masking"], stage] = entry["metrics"]
        path.write_text(json.dumps(results))
    plain = aggregate(dirs, "plain", out_root=tmp_path / "results")["markdown"].read_text()
    assert "@t" not in plain
    table = aggregate(dirs, "op", out_root=tmp_path / "results", include_operating_point=True)["markdown"].read_text()
    header = next(line for line in table.splitlines() if line.startswith("| category"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    saliency_ear = [column for column in columns if column.startswith("saliency EAR ")]
    assert [column.removeprefix("saliency EAR ") for column in saliency_ear] == [
        "I-AUROC", "P-AUROC", *OPERATING_POINT_LABELS.values()
    ]  # fmt: skip
    rows = markdown_rows(table)
    assert (
        rows["grid"]["checkerboard EAR+FADeR PRO@t"]
        == f"{100 * written['grid', 'checkerboard', 'fader']['pro_at_threshold']:.1f}"
    )
