"""fader-aggregate on fake sweeps (metrics.json files, no training): tables, tidy CSV, provenance, chart, CLI, W&B."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fader_lightning.aggregate import aggregate, build_table, collect, main, wandb_mode
from fader_lightning.aggregate.reading import wandb_group
from fader_lightning.errors import ConfigError, DataError
from wandb_records import read_run

METRICS = ("image_auroc", "pixel_auroc", "aupro")
LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "aupro": "AUPRO"}
STAGE_LABELS = {"ear": "EAR", "fader": "EAR+FADeR"}


class Sweep:
    """Writes job folders as ``fader-train -m`` leaves them and remembers what it wrote."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(seed)
        self.values: dict[tuple[str, str, str], list[dict[str, float]]] = {}
        self.runs: dict[tuple[str, str, str], list[tuple[str, str]]] = {}  # (run_dir, commit)
        self.variant_values: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}  # key + " ".join(extra)
        self.jobs = 0

    def job(
        self,
        category: str,
        masking: str,
        seed: int = 0,
        stages: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> Path:
        """One job; ``stages`` maps stage -> ``ok``/``failed`` (``None``: crashed before writing metrics.json).

        ``extra``: further overrides of the job, e.g. ``("fader.patch_size=4",)``.
        """
        job = self.root / str(self.jobs)
        self.jobs += 1
        overrides = [f"data.category={category}", f"masking={masking}", f"seed={seed}", "stage=both", *extra]
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if stages is None:
            return job
        commit = f"commit{self.jobs:03d}"
        results = {}
        for stage, status in stages.items():
            entry = {
                "stage": stage, "status": status, "dataset": "MVTecADDataModule", "category": category,
                "masking": masking, "fill": "mosaic", "fader": stage == "fader", "seed": seed, "run_dir": str(job),
                "overrides": overrides, "config": {"seed": seed}, "environment": {"git_commit": commit},
            }  # fmt: skip
            if status == "ok":
                entry["metrics"] = {metric: float(self.rng.uniform(0.6, 1.0)) for metric in METRICS}
                self.values.setdefault((category, masking, stage), []).append(entry["metrics"])
                variant = " ".join(extra)
                self.variant_values.setdefault((category, masking, stage, variant), []).append(entry["metrics"])
            else:
                entry["error"] = "DataError: mask folder /data/x is missing"
            self.runs.setdefault((category, masking, stage), []).append((str(job.resolve()), commit))
            results[stage] = entry
        (job / "metrics.json").write_text(json.dumps(results))
        return job

    def multirun(self, categories: str, maskings: str, params: dict[str, str] | None = None) -> None:
        config = {
            "seed": 0, "stage": "ear", "data": {"category": "bottle"}, "masking": {"name": "saliency"},
            "hydra": {"sweeper": {"params": params},
                      "overrides": {"task": [f"data.category={categories}", f"masking={maskings}", "stage=both"]}},
        }  # fmt: skip
        (self.root / "multirun.yaml").write_text(yaml.safe_dump(config))


BOTH_OK = {"ear": "ok", "fader": "ok"}


@pytest.fixture
def complete(tmp_path: Path) -> tuple[list[Path], Sweep]:
    """2 categories × 2 masking methods × 2 stages, seed 0 in a sweep, seed 1 of bottle/saliency in a single run."""
    sweep = Sweep(tmp_path / "sweep_a")
    sweep.multirun("bottle,grid", "saliency,checkerboard")
    for category in ("bottle", "grid"):
        for masking in ("saliency", "checkerboard"):
            sweep.job(category, masking, stages=BOTH_OK)
    extra = Sweep(tmp_path / "run_b", seed=1)
    extra.jobs = 7  # its own job number and commit
    extra.job("bottle", "saliency", seed=1, stages=BOTH_OK)
    for key, values in extra.values.items():
        sweep.values[key] += values
        sweep.runs[key] += extra.runs[key]
    return [sweep.root, extra.root], sweep


@pytest.fixture
def incomplete(tmp_path: Path) -> Sweep:
    """bottle/checkerboard failed in stage 1, grid/saliency crashed before writing, screw never started."""
    sweep = Sweep(tmp_path / "sweep")
    sweep.multirun("bottle,grid,screw", "saliency,checkerboard")
    sweep.job("bottle", "saliency", stages=BOTH_OK)
    sweep.job("bottle", "checkerboard", stages={"ear": "failed"})
    sweep.job("grid", "saliency")
    sweep.job("grid", "checkerboard", stages=BOTH_OK)
    return sweep


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {cells[0]: dict(zip(split[0], cells, strict=True)) for cells in split[2:]}


def read_csv(path: Path) -> dict[tuple[str, str, str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(r["category"], r["masking"], r["stage"], r["metric"]): r for r in csv.DictReader(handle)}


def label(masking: str, stage: str, metric: str) -> str:
    return f"{masking} {STAGE_LABELS[stage]} {LABELS[metric]}"


def test_collect_reads_every_job_and_stage(complete: tuple[list[Path], Sweep]) -> None:
    dirs, _ = complete
    rows = collect(dirs)
    assert len(rows) == 2 * 2 * 2 + 2
    assert {row.status for row in rows} == {"ok"}
    assert sorted(row.seed for row in rows if (row.category, row.masking) == ("bottle", "saliency")) == [0, 0, 1, 1]


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


def test_partial_seeds_are_marked(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path / "sweep")
    sweep.job("bottle", "saliency", seed=0, stages={"ear": "ok"})
    sweep.job("bottle", "saliency", seed=1, stages={"ear": "failed"})
    table = build_table(collect([sweep.root]))
    stat = table.cell("bottle", "saliency", "ear").stat("image_auroc")
    assert (stat.n, stat.status) == (1, "partial")
    assert table.cell("bottle", "saliency", "ear").status == "partial"


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


def test_no_jobs_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path)):
        aggregate([tmp_path], "x", out_root=tmp_path / "results")


def test_cli_prints_paths_and_table(
    complete: tuple[list[Path], Sweep], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _ = complete
    out = tmp_path / "results"
    assert main([*map(str, dirs), "--name", "cli", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "cli" / "table.md") in printed
    assert "| bottle" in printed and "| mean" in printed


def test_cli_exit_2_when_nothing_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--name", "x", "--out", str(tmp_path / "results")]) == 2
    assert f"no training job found under {empty}" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_wandb_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # the key is for another host
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_wandb_offline_run(complete: tuple[list[Path], Sweep], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import wandb
    except ImportError:
        pytest.skip("wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    dirs, _ = complete
    aggregate(dirs[:1], "wb", out_root=tmp_path / "results", use_wandb=True)
    assert wandb.run is None  # the run it started is finished
    runs = list((tmp_path / "results" / "wb" / "wandb").glob("offline-run-*"))  # beside the table it logged
    assert len(runs) == 1
    run = read_run(runs[0])
    assert run.run.job_type == "aggregate"
    assert run.run.run_group == f"train-{dirs[0].name}"  # the group the sweep's jobs logged to


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


@pytest.fixture
def ablation(tmp_path: Path) -> Sweep:
    """A patch-size ablation: 2 categories × fader.patch_size 4,8 × seeds 0,1, every job with a constant override."""
    sweep = Sweep(tmp_path / "ablation")
    sweep.multirun("bottle,grid", "saliency", params={"fader.patch_size": "4,8", "seed": "0,1"})
    for category in ("bottle", "grid"):
        for patch_size in (4, 8):
            for seed in (0, 1):
                extra = (f"fader.patch_size={patch_size}", "data.image_size=128", "reuse_stage1=true")
                sweep.job(category, "saliency", seed=seed, stages=BOTH_OK, extra=extra)
    return sweep


def read_variant_csv(path: Path) -> dict[tuple[str, str, str, str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(r["category"], r["masking"], r["variant"], r["stage"], r["metric"]): r for r in csv.DictReader(handle)}


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


def test_no_variant_keeps_the_csv_columns(complete: tuple[list[Path], Sweep], tmp_path: Path) -> None:
    dirs, _ = complete
    paths = aggregate(dirs, "main", out_root=tmp_path / "results")
    with paths["csv"].open(newline="") as handle:
        header = next(csv.reader(handle))
    assert "variant" not in header
    assert all("variant" not in cell for cell in json.loads(paths["provenance"].read_text())["cells"])


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
