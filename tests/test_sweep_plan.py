"""ffcv-sweep plan: exact contents of the paper grid, dependencies, determinism, CSV round trip."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.sweep.plan import (
    GridSpec,
    build_plan,
    check_plan,
    plan_to_csv,
    pretrain_subsets,
    read_plan,
    topological_order,
    with_dependencies,
    write_plan,
)
from ffcv_inat.sweep.cli import main as sweep_main

pytestmark = pytest.mark.timeout(120)


def paper(tmp_path, ks=(50, 100, 200, 300, 398), seeds=(0,), scale=1.0, **kw):
    return build_plan(GridSpec("paper", ks, seeds, scale, str(tmp_path / "w"), "/data/imagenet", "/data/inat", **kw))


def test_paper_grid_counts_default_k(tmp_path):
    rows = paper(tmp_path)
    counts = Counter(r.kind for r in rows)
    # Class sets: A-{50,100,200,300} + A, NA-{50..398} + NA, R-{50..398} + all = 17
    # (A-398 is A itself; every NA-k and R-k is below its family's size).
    assert counts == {"beton": 17 * 2 + 2, "pretrain": 17, "finetune": 17, "linear": 17 + 1, "scratch": 1}
    pretrains = sorted(r.run_id for r in rows if r.kind == "pretrain")
    assert pretrains == sorted(
        [f"pretrain_A-{k}-s0" for k in (50, 100, 200, 300)]
        + ["pretrain_A-s0"]
        + [f"pretrain_NA-{k}-s0" for k in (50, 100, 200, 300, 398)]
        + ["pretrain_NA-s0"]
        + [f"pretrain_R-{k}-s0" for k in (50, 100, 200, 300, 398)]
        + ["pretrain_all-s0"]
    )
    betons = {r.run_id for r in rows if r.kind == "beton"}
    assert {
        "beton_inat-mini-a_train",
        "beton_inat-mini-a_eval",
        "beton_imagenet_A_val",
        "beton_imagenet_all_train",
        "beton_imagenet_R-398-s0_val",
    } <= betons
    assert not any(b.startswith("beton_imagenet_A-398") for b in betons)


def test_views_store_imagenet_once_and_copies_per_class_set(tmp_path):
    from ffcv_inat.sweep.executors import row_command
    from ffcv_inat.sweep.plan import plan_storage

    views, copies = paper(tmp_path), paper(tmp_path, betons="copies")
    assert sorted(r.run_id for r in views) == sorted(r.run_id for r in copies)  # the same grid, stored two ways
    betons = [r for r in views if r.kind == "beton"]
    assert sorted(r.run_id for r in betons if r.outputs.endswith(".beton")) == [
        "beton_imagenet_all_train",
        "beton_imagenet_all_val",
        "beton_inat-mini-a_eval",
        "beton_inat-mini-a_train",
    ]
    assert not any(r.outputs.endswith(".view.json") for r in copies)
    a50 = next(r for r in betons if r.run_id == "beton_imagenet_A-50-s0_train")
    cmd = row_command(a50)
    assert cmd[cmd.index("--from") + 1] == str(tmp_path / "w" / "betons" / "imagenet_all_train.beton")
    assert cmd[cmd.index("--out") + 1].endswith("imagenet_A-50-s0_train.view.json") and "--data-dir" not in cmd
    # ImageNet train + val once (1,281,167 + 50,000) and iNat-Mini-A train + eval (2 x 50 x 5,388)
    s = plan_storage(views)
    assert (s.betons, s.views, s.images, s.per_extra_seed) == (4, 32, 1_281_167 + 50_000 + 2 * 269_400, 0)
    c = plan_storage(copies)
    # copies: every class set again; one more seed adds its 14 drawn sets (A-k x 4, NA-k x 5, R-k x 5), train + val
    drawn = (50, 100, 200, 300) + 2 * (50, 100, 200, 300, 398)  # classes of the sets one seed draws
    assert c.per_extra_seed == sum(round(1_281_167 / 1000 * n) + 50 * n for n in drawn)
    assert c.images > 6_800_000 and "each further seed adds 3.66 M images" in c.describe()
    assert "4 betons write and hold 1.87 M images" in s.describe() and "56.6 kB a photo" in s.describe()


def test_paper_grid_two_seeds_and_drops_too_large_k(tmp_path):
    rows = paper(tmp_path, ks=(100, 500, 800), seeds=(0, 1))
    counts = Counter(r.kind for r in rows)
    # A: 500 and 800 > 398 dropped -> A-100 + A; NA: 100, 500 + NA (800 > 602); R: 100, 500, 800 + all.
    k_sets_per_seed = 1 + 2 + 3
    class_sets = 2 * k_sets_per_seed + 3  # full subsets are seed-free betons
    pretrain = 2 * (k_sets_per_seed + 3)  # ... but trained once per seed
    assert counts == {
        "beton": 2 * class_sets + 2,
        "pretrain": pretrain,
        "finetune": pretrain,
        "linear": pretrain + 2,
        "scratch": 2,
    }
    ids = {r.run_id for r in rows}
    assert "pretrain_A-500-s0" not in ids and "pretrain_NA-800-s1" not in ids and "pretrain_R-800-s1" in ids
    assert {"beton_imagenet_A_train", "pretrain_A-s0", "pretrain_A-s1"} <= ids
    assert pretrain_subsets([398, 602, 1000], ["A", "NA", "R"]) == [
        ("A", "A", None),
        ("NA", "NA", 398),
        ("NA", "NA", None),
        ("R", "R", 398),
        ("R", "R", 602),
        ("R", "all", None),
    ]
    assert pretrain_subsets([50], ["A"], full_subsets=False) == [("A", "A", 50), ("R", "all", None)]


def test_dependencies_acyclic_complete_and_inputs_made_by_them(tmp_path):
    rows = paper(tmp_path, seeds=(0, 1))
    check_plan(rows)  # every dependency is an earlier row and every input comes from a dependency
    by_id = {r.run_id: r for r in rows}
    assert [r.run_id for r in topological_order(rows)] == [r.run_id for r in rows]
    for r in rows:
        for d in r.depends_on:
            assert d in by_id
    for r in rows:
        if r.kind == "pretrain":
            assert sorted(r.depends_on) == sorted(
                [f"beton_imagenet_{r.target}_train", f"beton_imagenet_{r.target}_val"]
            )
            ending = ".beton" if r.target == "all" else ".view.json"  # every other class set: a view of all
            assert r.inputs["train"].endswith(f"{r.target}_train{ending}") and "init" not in r.inputs
        if r.kind == "finetune":
            pre = r.run_id.replace("finetune_", "pretrain_")
            assert set(r.depends_on) == {pre, "beton_inat-mini-a_train", "beton_inat-mini-a_eval"}
            assert r.inputs["init"] == str(Path(by_id[pre].outputs) / "checkpoints" / "last.pt")
            assert r.inputs["val"].endswith("inat-mini-a_eval.beton")
        if r.kind == "linear" and r.subset:
            assert set(r.depends_on) == {
                r.run_id.replace("linear_", "pretrain_"),
                "beton_imagenet_A_train",
                "beton_imagenet_A_val",
            }
        if r.kind == "scratch" or (r.kind == "linear" and not r.subset):
            assert "init" not in r.inputs and not any(d.startswith("pretrain_") for d in r.depends_on)
        if r.kind == "beton" and r.outputs.endswith(".beton"):
            assert r.depends_on == ()  # real data: nothing to make first
        if r.kind == "beton" and r.outputs.endswith(".view.json"):  # a view: of its split's ImageNet beton
            assert r.depends_on == (f"beton_imagenet_all_{r.split}",) and r.inputs == {
                "parent": by_id[f"beton_imagenet_all_{r.split}"].outputs
            }
    # Every pretraining feeds exactly one finetune and one probe.
    for p in (r for r in rows if r.kind == "pretrain"):
        users = Counter(by_id[x].kind for x in by_id if p.run_id in by_id[x].depends_on)
        assert users == {"finetune": 1, "linear": 1}


def test_cycles_and_missing_dependencies_are_refused(tmp_path):
    rows = paper(tmp_path, ks=(50,))
    bad = list(rows)
    bad[-1] = type(bad[-1])(**{**bad[-1].__dict__, "depends_on": ("nope",)})
    with pytest.raises(UserError, match="nope"):
        check_plan(bad)
    first, second = rows[0], rows[1]
    loop = [
        type(first)(**{**first.__dict__, "depends_on": (second.run_id,)}),
        type(second)(**{**second.__dict__, "depends_on": (first.run_id,)}),
    ]
    with pytest.raises(UserError, match="cycle"):
        topological_order(loop)


def test_same_arguments_same_plan_and_seed_changes_it(tmp_path):
    a = plan_to_csv(paper(tmp_path, seeds=(0,)))
    assert a == plan_to_csv(paper(tmp_path, seeds=(0,)))
    b = plan_to_csv(paper(tmp_path, seeds=(1,)))
    assert a != b and "pretrain_R-50-s1" in b


def test_csv_round_trip(tmp_path):
    rows = paper(tmp_path, seeds=(0, 2))
    write_plan(rows, tmp_path / "plan.csv")
    assert read_plan(tmp_path / "plan.csv") == rows


def test_epochs_scale_shrinks_epochs_and_step_interval(tmp_path):
    rows = {r.run_id: r for r in paper(tmp_path, ks=(50,), scale=0.1)}
    pre, ft, lin = rows["pretrain_A-50-s0"], rows["finetune_A-50-s0"], rows["linear_A-50-s0"]
    # pretrain 90 epochs /10 every 30; finetune 60 / every 20; probe 15 / every 5
    assert {"schedule.epochs=9", "schedule.step_every=3", "seed=0"} <= set(pre.overrides)
    assert {"schedule.epochs=6", "schedule.step_every=2"} <= set(ft.overrides)
    assert {"schedule.epochs=2", "schedule.step_every=1"} <= set(lin.overrides)  # round(1.5)=2, max(1, 0.5)
    assert not any(o.startswith("schedule.") for o in paper(tmp_path, ks=(50,))[-2].overrides)


def test_smoke_grid_makes_its_own_data(tmp_path):
    rows = build_plan(GridSpec("smoke", (8,), (0,), 1.0, str(tmp_path), full_subsets=False))
    counts = Counter(r.kind for r in rows)
    # A-8, NA-8, R-8 and all (the reference); A's betons for the probe; no pretraining on all of A / NA.
    assert counts == {"data": 1, "beton": 12, "pretrain": 4, "finetune": 4, "linear": 5, "scratch": 1}
    assert {r.run_id for r in rows if r.kind == "pretrain"} == {
        "pretrain_A-8-s0",
        "pretrain_NA-8-s0",
        "pretrain_R-8-s0",
        "pretrain_all-s0",
    }
    # the images: ImageNet's two betons and iNat's read the data; every other class set is a view
    assert all(
        r.depends_on == (("data_synthetic",) if r.outputs.endswith(".beton") else (f"beton_imagenet_all_{r.split}",))
        for r in rows
        if r.kind == "beton"
    )
    assert all("device=cpu" in r.overrides for r in rows if r.recipe)
    only = with_dependencies(rows, ["finetune_A-8-s0"])
    assert [r.run_id for r in only] == [
        "data_synthetic",
        "beton_imagenet_all_train",
        "beton_imagenet_all_val",
        "beton_imagenet_A-8-s0_train",
        "beton_imagenet_A-8-s0_val",
        "beton_inat-mini-a_train",
        "beton_inat-mini-a_eval",
        "pretrain_A-8-s0",
        "finetune_A-8-s0",
    ]


def test_plan_cli(tmp_path):
    out = tmp_path / "p" / "plan.csv"
    r = CliRunner().invoke(
        sweep_main,
        ["plan", "--grid", "paper", "--k", "50,100", "--imagenet-dir", "/x", "--inat-dir", "/y", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "pretrain" in r.output
    rows = read_plan(out)
    assert Path(rows[0].outputs).is_relative_to(tmp_path / "p")  # work dir defaults to the plan's folder
    for args, msg in (
        (["--k", "5,x"], "--k"),
        (["--k", "0"], "at least 1"),
        (["--families", "B"], "unknown family"),
        (["--epochs-scale", "0"], "positive"),
    ):
        r = CliRunner().invoke(sweep_main, ["plan", *args, "--out", str(out)])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(sweep_main, ["run", str(tmp_path / "missing.csv")])
    assert r.exit_code != 0 and "plan not found" in r.output


def test_smoke_runs_take_the_smoke_recipes_settings(tmp_path):
    from ffcv_inat.config import get_key, load_config
    from ffcv_inat.sweep.plan import SMOKE_GRID_OVERRIDES, SMOKE_RECIPE, STRUCTURE_KEYS, smoke_recipe_overrides

    smoke = load_config(SMOKE_RECIPE)
    grid = {item.partition("=")[0] for item in SMOKE_GRID_OVERRIDES}
    recipe_keys = [item.partition("=")[0] for item in smoke_recipe_overrides()]
    assert "optim.lr" in recipe_keys and "model.zero_init_residual" in recipe_keys
    assert not set(recipe_keys) & set(STRUCTURE_KEYS)
    rows = build_plan(GridSpec("smoke", (8,), (0,), 1.0, str(tmp_path), full_subsets=False))
    for r in (r for r in rows if r.recipe):
        keys = [o.partition("=")[0] for o in r.overrides]
        assert len(keys) == len(set(keys)), r.overrides  # each key once
        cfg, paper = load_config(r.recipe, list(r.overrides)), load_config(r.recipe)
        for key in recipe_keys:  # every value the smoke recipe sets, unless the grid sets it
            if key not in grid:
                assert get_key(cfg, key) == get_key(smoke, key), (r.run_id, key)
        for key in ("model.init", "model.freeze"):  # the run's structure: its paper recipe's
            assert get_key(cfg, key) == get_key(paper, key) or (r.run_id, key) == ("linear_random-s0", "model.init")
        assert (cfg.device, cfg.schedule.epochs, cfg.schedule.max_steps_per_epoch, cfg.eval.every) == ("cpu", 4, 3, 0)


def test_plan_checks_every_set_against_the_recipes_when_written(tmp_path):
    out = tmp_path / "plan.csv"
    for grid in ("paper", "smoke"):
        for item, msg in (
            ("data.wrkers=16", "unknown key data.wrkers"),
            ("optim.lr=fast", "optim.lr must be float"),
            ("device=gpu", "device must be one of auto, cpu, cuda"),
            ("schedule=3", "schedule must be a mapping"),
        ):
            r = CliRunner().invoke(sweep_main, ["plan", "--grid", grid, "--set", item, "--out", str(out)])
            assert r.exit_code != 0 and msg in r.output, (grid, item, r.output)
            assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
            assert not out.exists()  # no plan that would fail at every run's start
    r = CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--set", "data.workers=2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for row in (row for row in read_plan(out) if row.recipe):  # after the grid's own: it wins
        assert row.overrides.index("data.workers=2") > row.overrides.index("data.workers=1")


def test_smoke_data_row_names_its_synthetic_preset(tmp_path):
    from ffcv_inat.synthetic import STUDY_PRESETS
    from ffcv_inat.sweep.executors import row_command

    rows = build_plan(GridSpec("smoke", (8,), (0,), 1.0, str(tmp_path), full_subsets=False))
    data = rows[0]
    assert data.kind == "data" and data.options["preset"] in STUDY_PRESETS
    assert row_command(data)[-2:] == ["--preset", data.options["preset"]]


@pytest.mark.parametrize("layout", ["views", "copies"])
def test_given_weights_stand_for_a_sets_pretraining(tmp_path, layout):
    """--pretrained all=FILE: no pretraining of all, its finetune and probe start from FILE and
    say which set it stands for; with copies, nothing writes the beton only that run read."""
    weights = str(tmp_path / "resnet50-imagenet1k-v1.pth")
    given = paper(tmp_path, ks=(50,), betons=layout, pretrained=(("all", weights),))
    full = paper(tmp_path, ks=(50,), betons=layout)
    ids = {r.run_id for r in given}
    assert {r.run_id for r in full} - ids == (
        {"pretrain_all-s0"} | ({"beton_imagenet_all_train", "beton_imagenet_all_val"} if layout == "copies" else set())
    )
    for kind in ("finetune", "linear"):
        row = next(r for r in given if r.run_id == f"{kind}_all-s0")
        assert row.inputs["init"] == weights and "pretrain_all-s0" not in row.depends_on
        assert row.overrides[-1] == "model.init_pretrained_on=all" and (row.subset, row.k) == ("all", None)
    check_plan(given)
    r = CliRunner().invoke(sweep_main, ["plan", "--pretrained", "all=none.pth", "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 1 and r.output == "Error: --pretrained all=none.pth: checkpoint not found: none.pth\n"
    (tmp_path / "w.pth").touch()
    for item, msg in (
        ("R-50-s3", "the grid pretrains no R-50-s3 (its sets: A-50-s0, A, NA-50-s0"),
        ("all", "given twice"),
    ):
        r = CliRunner().invoke(
            sweep_main,
            [
                "plan",
                "--k",
                "50",
                "--pretrained",
                f"{item}={tmp_path / 'w.pth'}",
                "--pretrained",
                f"all={tmp_path / 'w.pth'}",
            ]
            + ["--out", str(tmp_path / "p.csv")],
        )
        assert r.exit_code == 1 and msg in r.output and len(r.output.splitlines()) == 1, r.output
