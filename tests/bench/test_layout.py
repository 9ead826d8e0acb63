"""The house rules of bench/ made mechanical: one `ffcv-bench` lists every subcommand, no
`python -m` click main is left, and no module outside the data path imports its submodules."""

import ast
from pathlib import Path

from click.testing import CliRunner

from ffcv_inat.bench.cli import SECTIONS, main

REPO = Path(__file__).resolve().parents[2]
CODE = [p for d in ("ffcv_inat", "writers", "bench") for p in (REPO / d).rglob("*.py")]


def test_help_lists_every_subcommand_in_its_section():
    text = CliRunner().invoke(main, ["--help"]).output
    for title, commands in SECTIONS:
        assert title in text
        for c in commands:
            names = [f"{c.name} {sub}" for sub in c.commands] if hasattr(c, "commands") else [c.name]
            assert all(f"  {n} " in text for n in names), (names, text)
    assert set(main.commands) == {c.name for _, commands in SECTIONS for c in commands}
    expected = {
        "loader",
        "model",
        "epoch",
        "train-run",
        "view-cost",
        "write-speed",
        "cost",
        "decode-check",
        "fault-soak",
        "beton-check",
        "inat-json",
        "prepare",
        "report",
    }
    assert set(main.commands) == expected


def test_no_click_main_but_ffcv_benchs_own_is_left_in_bench():
    mains = [
        p.relative_to(REPO).as_posix()
        for p in (REPO / "bench").rglob("*.py")
        if '__name__ == "__main__"' in p.read_text()
    ]
    assert mains == ["bench/cli.py"]


def _package(path: Path) -> list[str]:
    """The package a module file is in, as installed: writers/ and bench/ are ffcv_inat.writers, .bench."""
    parts = list(path.relative_to(REPO).parent.parts)
    return parts if parts[0] == "ffcv_inat" else ["ffcv_inat", *parts]


def _imported(path: Path, node: ast.AST) -> list[str]:
    """The absolute module names an import statement names (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = _package(path)[: len(_package(path)) - node.level + 1] if node.level else []
    module = ".".join([*base, *([node.module] if node.module else [])])
    return [module]


def test_only_the_data_path_imports_its_own_submodules():
    offenders = []
    for path in CODE:
        if (REPO / "ffcv_inat" / "loader") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            offenders += [
                f"{path.relative_to(REPO)}: {n}" for n in _imported(path, node) if n.startswith("ffcv_inat.loader.")
            ]
    assert offenders == []


def test_no_production_signature_carries_a_test_switch():
    assert not [p for p in CODE if "gpu_path_on_cpu=" in p.read_text() or "--gpu-path-on-cpu" in p.read_text()]


def test_no_function_is_over_70_lines():
    long = [
        f"{path.relative_to(REPO)}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in CODE
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 70
    ]
    assert long == []
