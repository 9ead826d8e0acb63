"""ffcv-analyze on run dirs made by the smoke grid (real ffcv-train runs, see test_sweep_e2e.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from ffcv_inat.analyze.cli import main as analyze_main


@pytest.mark.timeout(900)
def test_table_equals_run_files_and_every_figure_is_drawn(smoke_grid, tmp_path):
    runs, out = smoke_grid["work"] / "runs", tmp_path / "figs"
    species = pd.read_csv(runs / "scratch_s0" / "per_class.csv", dtype={"id": str})
    # A made-up representation table: species id -> ImageNet images, coloured by supercategory.
    pd.DataFrame(
        {
            "species": species["id"],
            "imagenet_images": [13 * i for i in range(len(species))],
            "family": species["supercategory"],
        }
    ).to_csv(tmp_path / "species.csv", index=False)
    r = CliRunner().invoke(
        analyze_main,
        [str(runs), "--out", str(out), "--species-csv", str(tmp_path / "species.csv"), "--pretrained", "R-8"],
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "results.csv")
    done = sorted(p.parent.name for p in runs.glob("*/summary.json"))
    assert sorted(table["run"]) == done and len(done) == 5
    assert dict(zip(table["run"], table["kind"])) == {
        "pretrain_R-8-s0": "pretrain",
        "finetune_R-8-s0": "finetune",
        "linear_R-8-s0": "linear",
        "linear_random-s0": "linear",
        "scratch_s0": "scratch",
    }
    for _, row in table.iterrows():
        s = json.loads((runs / row["run"] / "summary.json").read_text())
        for col in ("top1", "top5", "loss", "wall_seconds", "epochs", "num_classes", "train_images_per_second"):
            assert row[col] == pytest.approx(s[col], rel=1e-12, abs=0), (row["run"], col)
        for name, acc in s["per_supercategory"].items():
            if acc is not None:
                assert row[f"acc_{name}"] == pytest.approx(acc, rel=1e-12), (row["run"], name)
        assert row["gpu_hours"] == 0 and "cpu" in row["device"].lower()
    ft = table.set_index("run").loc["finetune_R-8-s0"]
    assert (ft["family"], ft["subset"], ft["k"], ft["num_pretrain_classes"], ft["target"]) == (
        "R",
        "R",
        8,
        8,
        "inat-mini-a",
    )
    gain = pd.read_csv(out / "species_gain.csv", dtype={"id": str}).set_index("id")
    pre = pd.read_csv(runs / "finetune_R-8-s0" / "per_class.csv", dtype={"id": str}).set_index("id")
    assert (gain["gain"] - (pre["accuracy"] - species.set_index("id")["accuracy"])).abs().max() < 1e-12
    for name in (
        "fig1_species_gain.png",
        "fig2_supercategories.png",
        "fig3_finetune_vs_classes.png",
        "fig4_linear_probe_vs_classes.png",
        "fig6_R_animal_scaled.png",
    ):
        assert (out / name).stat().st_size > 10_000, name
        assert f"figure: {out / name}" in r.output
    assert "finetune_R-8-s0" in r.output  # the table is printed

    # The findings on the smoke slice (R-8, scratch, the probes; no ImageNet, A or NA runs).
    findings = pd.read_csv(out / "findings.csv", keep_default_na=False).set_index("finding")
    assert list(findings.index) == list(range(1, 11))
    two = findings.loc[2]  # R-8, the largest R-k, against scratch: the one finding the slice can tell
    top1 = {
        run: json.loads((runs / run / "summary.json").read_text())["top1"] for run in ("finetune_R-8-s0", "scratch_s0")
    }
    assert (two["a"], two["b"]) == ("R-8", "scratch")
    assert (float(two["a_top1"]), float(two["b_top1"])) == (top1["finetune_R-8-s0"], top1["scratch_s0"])
    assert two["verdict"] == ("holds" if top1["finetune_R-8-s0"] > top1["scratch_s0"] else "does not hold")
    assert two["certainty"] == "1 seed: spread not measured" and two["needs"] == ""
    assert (findings.drop(index=2)["verdict"] == "cannot tell").all()
    assert "finetune_all-s0" in findings.loc[1, "needs"].split()
    assert findings.loc[3, "needs"].split() == [
        "finetune_A-8-s0",
        "finetune_A-s0",
        "finetune_all-s0",
        "finetune_NA-8-s0",
        "finetune_NA-s0",
    ]  # R's curve ends at all
    assert "The paper's findings on these runs" in r.output and "missing runs: finetune_A-8-s0" in r.output
    assert "| 2 | 3 |" in (out / "findings.md").read_text()
    assert f"table:  {out / 'findings.csv'}" in r.output
