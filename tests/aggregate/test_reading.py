"""Finding the jobs of sweeps and run folders, and what each expected and left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fader_lightning.aggregate import aggregate, build_table, collect
from fader_lightning.aggregate.reading import wandb_group
from fader_lightning.errors import DataError
from sweeps import BOTH_OK, Sweep, label, markdown_rows, read_csv


def test_collect_reads_every_job_and_stage(complete: tuple[list[Path], Sweep]) -> None:
    dirs, _ = complete
    rows = collect(dirs)
    assert len(rows) == 2 * 2 * 2 + 2
    assert {row.status for row in rows} == {"ok"}
    assert sorted(row.seed for row in rows if (row.category, row.masking) == ("bottle", "saliency")) == [0, 0, 1, 1]


def test_failed_and_missing_jobs_are_marked_not_dropped(incomplete: Sweep, tmp_path: Path) -> None:
    paths = aggregate([incomplete.root], "partial", out_root=tmp_path / "results")
    rows = markdown_rows(paths["markdown"].read_text())
    assert list(rows) == ["bottle", "grid", "screw", "mean"]
    for metric in ("image_auroc", "pixel_auroc"):
        assert rows["bottle"][label("checkerboard", "ear", metric)] == "failed"
        assert rows["bottle"][label("checkerboard", "fader", metric)] == "—"  # stage 2 never ran
        for stage in ("ear", "fader"):
            assert rows["grid"][label("saliency", stage, metric)] == "—"
            assert all(rows["screw"][label(masking, stage, metric)] == "—" for masking in ("saliency", "checkerboard"))
            # only bottle has a saliency result: the mean is bottle's, marked incomplete
            bottle = incomplete.values["bottle", "saliency", stage][0][metric]
            assert rows["mean"][label("saliency", stage, metric)] == f"{100 * bottle:.1f}*"
    table = read_csv(paths["csv"])
    failed = table["bottle", "checkerboard", "ear", "image_auroc"]
    crashed = table["grid", "saliency", "ear", "image_auroc"]
    never = table["screw", "saliency", "fader", "image_auroc"]
    assert (failed["status"], failed["n"], failed["mean"]) == ("failed", "0", "")
    assert failed["run_dirs"] == str((incomplete.root / "1").resolve())
    assert crashed["status"] == "missing"
    assert crashed["run_dirs"] == str((incomplete.root / "2").resolve())
    assert (never["status"], never["run_dirs"]) == ("missing", str(incomplete.root.resolve()))
    cells = json.loads(paths["provenance"].read_text())["cells"]
    failed_cell = next(
        c for c in cells if (c["category"], c["masking"], c["stage"]) == ("bottle", "checkerboard", "ear")
    )
    assert failed_cell["runs"][0]["error"].startswith("DataError")


def test_no_jobs_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path)):
        aggregate([tmp_path], "x", out_root=tmp_path / "results")


def test_missing_jobs_of_an_ablation_include_the_variant(ablation: Sweep, tmp_path: Path) -> None:
    ablation.multirun("bottle,grid", "saliency", params={"fader.patch_size": "4,8,16", "seed": "0,1"})
    table = build_table(collect([ablation.root]))
    assert table.variants == ("fader.patch_size=4", "fader.patch_size=8", "fader.patch_size=16")
    for category in ("bottle", "grid"):
        for stage in ("ear", "fader"):
            assert table.cell(category, "saliency", stage, "fader.patch_size=8").status == "ok"
            never = table.cell(category, "saliency", stage, "fader.patch_size=16")
            assert never.status == "missing"
            assert sorted(row.seed for row in never.rows) == [0, 1]
            assert {row.run_dir for row in never.rows} == {str(ablation.root.resolve())}


def test_list_valued_sweep_and_default_variant(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path / "levels")
    sweep.multirun("bottle", "saliency", params={"fader.levels": "[0,1,2],[0], [1, 2]"})
    sweep.job("bottle", "saliency", stages=BOTH_OK, extra=("fader.levels=[0,1,2]",))
    sweep.job("bottle", "saliency", stages=BOTH_OK, extra=("fader.levels=[0]",))
    other = Sweep(tmp_path / "default_run")
    other.job("bottle", "saliency", stages=BOTH_OK)  # no fader.levels override: the default levels
    table = build_table(collect([sweep.root, other.root]))
    assert table.variants == ("default", "fader.levels=[0,1,2]", "fader.levels=[0]", "fader.levels=[1,2]")
    assert table.cell("bottle", "saliency", "fader", "default").status == "ok"
    assert table.cell("bottle", "saliency", "fader", "fader.levels=[0]").status == "ok"
    assert table.cell("bottle", "saliency", "fader", "fader.levels=[1,2]").status == "missing"


def test_per_dataset_settings_are_not_variants(tmp_path: Path) -> None:
    from fader_lightning.aggregate.reading import variant_keys
    from fader_lightning.aggregate.table import Row

    def row(category: str, seed: int, *extra: str) -> Row:
        overrides = [f"data.category={category}", "masking=saliency", f"seed={seed}", *extra]
        return Row(category, "saliency", "ear", "ok", str(tmp_path), seed, overrides=overrides)

    rows = [row("bottle", 0), row("bottle", 1), row("hazelnut_toy", 0, "data.mask_suffix="),
            row("hazelnut_toy", 1, "data.mask_suffix=")]  # fmt: skip
    assert variant_keys(rows) == []
    assert variant_keys([*rows, row("bottle", 2, "fader.patch_size=4")]) == ["fader.patch_size"]


def test_wandb_group_is_the_one_the_jobs_logged_to(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, _ = complete
    assert wandb_group(dirs[:1]) == f"train-{dirs[0].name}"  # a multirun's jobs: the sweep folder
    assert wandb_group(dirs) is None  # two sweeps, two groups: the aggregate run joins neither
    single = tmp_path / "single_run"
    Sweep(single).job("bottle", "saliency", stages=BOTH_OK)
    (job,) = [p for p in single.rglob("metrics.json")]
    assert wandb_group([job.parent]) == f"train-{job.parent.name}"  # a single run: its own folder


def test_runs_that_overwrite_moved_aside_are_not_jobs(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, _ = complete
    before = len(collect(dirs))
    job = next(path.parent for path in dirs[0].rglob("metrics.json"))
    aside = job / ".replaced-2026-01-01_00-00-00-000000"
    aside.mkdir()
    (aside / "metrics.json").write_text((job / "metrics.json").read_text())
    assert len(collect(dirs)) == before
