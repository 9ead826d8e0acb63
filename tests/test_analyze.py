"""ffcv-analyze on run dirs written by hand to the run-dir contract (fast; the smoke grid's
real run dirs are analysed in test_analyze_smoke.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from ffcv_inat.analyze.table import (
    curve_points,
    describe_run,
    gather,
    per_class_table,
    reference_levels,
    species_gain,
    supercategory_table,
)
from ffcv_inat.analyze.cli import main as analyze_main

pytestmark = pytest.mark.timeout(120)

SUPERS = ["Birds", "Insects", "Mammals"]
SPECIES = [(0, "5", "Aves one", "Birds"), (1, "9", "Insecta two", "Insects"), (2, "12", "Mammalia three", "Mammals")]


def manifest(betons: Path, name: str, dataset: str, subset=None, k=None, seed=None, n=3) -> str:
    betons.mkdir(parents=True, exist_ok=True)
    if dataset == "imagenet":
        classes = [dict(label=i, id=f"n{i:08d}", name=f"c{i}", supercategory="animal", num_images=2) for i in range(n)]
    else:
        classes = [dict(label=lab, id=i, name=nm, supercategory=sc, num_images=2) for lab, i, nm, sc in SPECIES]
    (betons / f"{name}.json").write_text(
        json.dumps(
            dict(dataset=dataset, split="train", subset=subset, k=k, seed=seed, num_images=2 * n, classes=classes)
        )
    )
    return str(betons / f"{name}.beton")


def run(
    runs: Path,
    name: str,
    train: str,
    val: str,
    top1: float,
    init=None,
    freeze="none",
    seed=0,
    device="cpu",
    world_size=1,
    wall=100.0,
    per_class=None,
) -> Path:
    d = runs / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.yaml").write_text(
        yaml.safe_dump({"seed": seed, "model": {"init": init, "freeze": freeze}, "data": {"train": train, "val": val}})
    )
    supers = {s: round(top1 + 0.01 * i, 4) for i, s in enumerate(SUPERS)}
    (d / "summary.json").write_text(
        json.dumps(
            dict(
                recipe="x.yaml",
                top1=top1,
                top5=min(1.0, top1 + 0.2),
                loss=2.5 - top1,
                per_supercategory=supers,
                train_images_per_second=1234.5,
                wall_seconds=wall,
                epochs=3,
                device=device,
                world_size=world_size,
                train_beton=train,
                val_beton=val,
                init=init,
                freeze=freeze,
                num_classes=3,
            )
        )
    )
    if per_class is not None:
        rows = [
            dict(label=lab, id=i, name=nm, supercategory=sc, images=4, correct=int(4 * a), accuracy=a)
            for (lab, i, nm, sc), a in zip(SPECIES, per_class)
        ]
        pd.DataFrame(rows).to_csv(d / "per_class.csv", index=False)
    return d


@pytest.fixture()
def study(tmp_path):
    """A two-seed miniature of the study's run dirs, with known numbers."""
    b, r = tmp_path / "betons", tmp_path / "runs"
    inat_t, inat_e = manifest(b, "inat_train", "inat-mini-a"), manifest(b, "inat_eval", "inat-mini-a")
    a_t, a_v = manifest(b, "A_train", "imagenet", "A"), manifest(b, "A_val", "imagenet", "A")
    acc = {"A-50": 0.30, "A": 0.40, "NA-50": 0.20, "NA": 0.25, "R-50": 0.22, "all": 0.50}
    for seed in (0, 1):
        for label, top1 in acc.items():
            subset, _, k = label.partition("-")
            k = int(k) if k else None
            tr = manifest(b, f"{label}_s{seed}_train", "imagenet", subset, k, seed if k else None)
            pre = run(
                r, f"pretrain_{label}-s{seed}", tr, tr, 0.6, seed=seed, device="NVIDIA H100", world_size=2, wall=3600.0
            )
            ckpt = str(pre / "checkpoints" / "last.pt")
            run(
                r,
                f"finetune_{label}-s{seed}",
                inat_t,
                inat_e,
                top1 + 0.02 * seed,
                init=ckpt,
                seed=seed,
                per_class=[top1, top1 + 0.1, 0.0],
            )
            run(r, f"linear_{label}-s{seed}", a_t, a_v, top1 / 2, init=ckpt, freeze="backbone", seed=seed)
        run(r, f"scratch_s{seed}", inat_t, inat_e, 0.10, seed=seed, per_class=[0.1, 0.2, 0.0])
        run(r, f"linear_random-s{seed}", a_t, a_v, 0.05, freeze="backbone", seed=seed)
    return tmp_path


def test_each_run_is_described_from_its_files(study):
    r = study / "runs"
    pre = describe_run(r / "pretrain_NA-50-s1")
    assert (pre["kind"], pre["family"], pre["subset"], pre["k"], pre["num_pretrain_classes"], pre["seed"]) == (
        "pretrain",
        "NA",
        "NA",
        50,
        50,
        1,
    )
    assert pre["target"] == "NA-50" and pre["gpu_hours"] == pytest.approx(2.0)  # 1 h on 2 GPUs
    ft = describe_run(r / "finetune_all-s0")  # subset comes from the pretraining run its --init lives in
    assert (ft["kind"], ft["family"], ft["subset"], ft["k"], ft["num_pretrain_classes"], ft["target"]) == (
        "finetune",
        "R",
        "all",
        None,
        1000,
        "inat-mini-a",
    )
    assert ft["gpu_hours"] == 0  # a CPU run uses no GPU
    lin = describe_run(r / "linear_A-s1")
    assert (lin["kind"], lin["num_pretrain_classes"], lin["target"]) == ("linear", 398, "imagenet-a")
    assert describe_run(r / "scratch_s0")["kind"] == "scratch"
    rand = describe_run(r / "linear_random-s0")
    assert (rand["kind"], rand["subset"], rand["num_pretrain_classes"]) == ("linear", "", None)


def test_table_numbers_equal_summaries(study):
    df = gather(study / "runs")
    assert len(df) == 2 * (6 * 3 + 2)
    for _, row in df.iterrows():
        s = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert row["run"] == Path(row["run_dir"]).name
        assert (row["top1"], row["top5"], row["loss"], row["wall_seconds"]) == (
            s["top1"],
            s["top5"],
            s["loss"],
            s["wall_seconds"],
        )
        for name, acc in s["per_supercategory"].items():
            assert row[f"acc_{name}"] == acc


def test_curves_references_and_supercategories(study):
    df = gather(study / "runs")
    ft = curve_points(df, "finetune").set_index(["family", "x"])
    assert ft.loc[("A", 50), "mean"] == pytest.approx(0.31) and ft.loc[("A", 50), "n"] == 2
    assert ft.loc[("A", 398), "mean"] == pytest.approx(0.41)
    assert ft.loc[("R", 1000), "mean"] == pytest.approx(0.51)  # R's curve ends at full ImageNet
    assert ft.loc[("NA", 602), "std"] == pytest.approx(pd.Series([0.25, 0.27]).std())
    assert set(ft.index.get_level_values("family")) == {"A", "NA", "R"}
    assert reference_levels(df, "finetune") == pytest.approx({"full ImageNet": 0.51, "no pretraining": 0.10})
    assert reference_levels(df, "linear") == pytest.approx({"full ImageNet": 0.25, "no pretraining": 0.05})
    sup = supercategory_table(df)
    assert list(sup.columns) == [
        "scratch",
        "pretrained on ImageNet",
        "pretrained on ImageNet-A",
        "pretrained on ImageNet-NA",
    ]
    assert sup.loc["Insects", "scratch"] == pytest.approx(0.11)
    assert sup.loc["Birds", "pretrained on ImageNet"] == pytest.approx(0.51)


def test_species_gain_is_pretrained_minus_scratch(study):
    df = gather(study / "runs")
    gain = species_gain(per_class_table(df), "all").set_index("id")
    assert gain.loc["5", "gain"] == pytest.approx(0.5 - 0.1)
    assert gain.loc["9", "gain"] == pytest.approx(0.6 - 0.2)
    assert gain.loc["12", "gain"] == pytest.approx(0.0)
    assert species_gain(per_class_table(df), "A").loc[0, "pretrained"] == pytest.approx(0.40)


def test_cli_writes_table_and_figures(study, tmp_path):
    out = tmp_path / "figs"
    species = tmp_path / "species.csv"
    species.write_text("species,imagenet_images,family\n5,1300,Birds\nInsecta two,0,Insects\n12,40,Mammals\n")
    r = CliRunner().invoke(analyze_main, [str(study / "runs"), "--out", str(out), "--species-csv", str(species)])
    assert r.exit_code == 0, r.output
    assert "finetune_all-s0" in r.output and "fig3_finetune_vs_classes.png" in r.output
    for name in (
        "fig1_species_gain.png",
        "fig2_supercategories.png",
        "fig3_finetune_vs_classes.png",
        "fig4_linear_probe_vs_classes.png",
        "fig6_R_animal_scaled.png",
    ):
        assert (out / name).stat().st_size > 10_000, name
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 40 and set(table["kind"]) == {"pretrain", "finetune", "linear", "scratch"}
    joined = pd.read_csv(out / "species_gain_joined.csv")
    assert sorted(joined["family"]) == ["Birds", "Insects", "Mammals"]  # matched by id and by name
    findings = pd.read_csv(out / "findings.csv")  # the paper's findings on the same runs, printed too
    assert list(findings["finding"]) == list(range(1, 11)) and (out / "findings.md").is_file()
    assert "The paper's findings on these runs" in r.output


def test_cli_without_species_csv_says_what_it_needs(study, tmp_path):
    r = CliRunner().invoke(analyze_main, [str(study / "runs"), "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    assert "figure 1 skipped" in r.output and "species,".replace(",", "") in r.output
    assert "imagenet_images" in r.output and "family" in r.output
    assert not (tmp_path / "f" / "fig1_species_gain.png").exists()


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, msg in (
        ([str(tmp_path / "nope")], "runs dir not found"),
        ([str(tmp_path / "empty")], "no completed runs"),
    ):
        r = CliRunner().invoke(analyze_main, args)
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("species,count\n1,2\n")
    b = tmp_path / "b"
    t = manifest(b, "inat", "inat-mini-a")
    run(tmp_path / "runs", "scratch_s0", t, t, 0.1, per_class=[0.1, 0.2, 0.3])
    r = CliRunner().invoke(analyze_main, [str(tmp_path / "runs"), "--species-csv", str(bad)])
    assert r.exit_code != 0 and "missing column(s) imagenet_images, family" in r.output


def test_a_corrupt_or_partial_summary_is_left_out_and_reported_once(study, tmp_path, capsys):
    runs = study / "runs"
    truncated = runs / "finetune_A-50-s0" / "summary.json"
    truncated.write_text(truncated.read_text()[:40])  # cut short, as by an interrupted copy
    partial = runs / "pretrain_NA-s1" / "summary.json"  # also read for its finetune's subset
    partial.write_text(json.dumps({"recipe": "x.yaml", "epochs": 3}))  # no final metrics
    r = CliRunner().invoke(analyze_main, [str(runs), "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    assert "38 completed runs" in r.stdout and "finetune_A-50-s0" not in r.stdout
    for path in (truncated, partial):
        assert r.stderr.count(str(path)) == 1, r.stderr  # once, though every reader of it asked
    assert len(pd.read_csv(tmp_path / "f" / "results.csv")) == 38
    assert len(gather(runs)) == 38 and capsys.readouterr().err == ""  # said already in this process


def test_caption_is_drawn_on_every_figure(study, tmp_path):
    plain, captioned = tmp_path / "plain", tmp_path / "captioned"
    for out, extra in ((plain, []), (captioned, ["--caption", "synthetic data"])):
        r = CliRunner().invoke(analyze_main, [str(study / "runs"), "--out", str(out), *extra])
        assert r.exit_code == 0, r.output
    for name in (
        "fig2_supercategories.png",
        "fig3_finetune_vs_classes.png",
        "fig4_linear_probe_vs_classes.png",
        "fig6_R_animal_scaled.png",
    ):
        assert (plain / name).read_bytes() != (captioned / name).read_bytes(), name


def test_given_weights_count_as_their_sets_point_and_are_said(study, tmp_path):
    """The study with full ImageNet's pretraining given as weights (`ffcv-sweep plan --pretrained
    all=FILE`): its finetune and probe are the `all` point, the table says "given" and names the
    file, and the findings say so; weights whose set nobody declared stay "external"."""
    import shutil

    r = study / "runs"
    weights = tmp_path / "resnet50-imagenet1k-v1.pth"
    weights.touch()
    for seed in (0, 1):
        shutil.rmtree(r / f"pretrain_all-s{seed}")
        for kind in ("finetune", "linear"):
            d = r / f"{kind}_all-s{seed}"
            cfg = yaml.safe_load((d / "config.yaml").read_text())
            cfg["model"].update(init=str(weights), init_pretrained_on="all")
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            summary = json.loads((d / "summary.json").read_text())
            (d / "summary.json").write_text(json.dumps({**summary, "init": str(weights)}))
    ft = describe_run(r / "finetune_all-s0")
    assert (ft["subset"], ft["num_pretrain_classes"], ft["pretraining"], ft["init"]) == (
        "all",
        1000,
        "given",
        str(weights),
    )
    assert describe_run(r / "finetune_A-s0")["pretraining"] == "run"
    out = tmp_path / "figs"
    result = CliRunner().invoke(analyze_main, [str(r), "--out", str(out)])
    assert result.exit_code == 0, result.output
    runs = "finetune_all-s0, finetune_all-s1, linear_all-s0, linear_all-s1"
    said = f"all: given weights {weights}, not a pretraining run of this study ({runs})"
    assert f"counted as a set's pretraining: {said}" in result.output and said in (out / "findings.md").read_text()
    findings = pd.read_csv(out / "findings.csv")
    assert findings.loc[0, "verdict"] == "holds"  # finding 1 (ImageNet by far) measured on the given point
    undeclared = r / "finetune_all-s0" / "config.yaml"
    cfg = yaml.safe_load(undeclared.read_text())
    cfg["model"]["init_pretrained_on"] = None
    undeclared.write_text(yaml.safe_dump(cfg))
    assert describe_run(r / "finetune_all-s0")["pretraining"] == "external"
