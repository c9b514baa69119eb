"""The documentation: generated result tables agree with their JSON, the README's links and numbers hold.

The site itself is built by `.ci/run` (`mkdocs build --strict`); these tests need no MkDocs.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def gen_tables():
    spec = importlib.util.spec_from_file_location("gen_tables", DOCS / "gen_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_table_shows_the_inference_time_of_its_json(gen_tables):
    summary = json.loads((ROOT / "benchmarks" / "results" / "summary.json").read_text())
    ms = summary["results"]["torch_inference"]["ms_per_image_median"]
    text = gen_tables.render("summary")
    assert f"**{round(ms)} ms/image**" in text
    assert "`benchmarks/results/summary.json`" in text


def test_robustness_table_row_equals_its_json(gen_tables):
    nominal = json.loads((ROOT / "benchmarks" / "results" / "robustness.json").read_text())["nominal"]
    row = next(line for line in gen_tables.render("robustness").splitlines() if line.startswith(f"| {nominal['description']} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(nominal["default"]["n_images"])
    assert cells[2] == f"{nominal['default']['iou']['beam']:.3f}"


def test_rounding_is_half_up_as_written(gen_tables):
    assert gen_tables.f(0.215, 2) == "0.22" and gen_tables.f(2544.5, 0) == "2545" and gen_tables.f(None) == "—"


def test_every_table_renders_from_files_that_exist(gen_tables):
    for name in gen_tables.TABLES:
        text = gen_tables.render(name)
        assert "|---|" in text and text.count("\n|") >= 2, name


def test_every_table_marker_in_the_pages_names_a_table(gen_tables):
    used = set()
    for page in DOCS.rglob("*.md"):
        for name in gen_tables.MARKER.findall(page.read_text(encoding="utf-8")):
            assert name in gen_tables.TABLES, f"{page}: unknown table {name}"
            used.add(name)
    assert used, "no page uses a generated table"


def test_an_unknown_table_stops_the_expansion(gen_tables):
    with pytest.raises(RuntimeError, match="no table named 'nosuch'"):
        gen_tables.expand("text\n<!-- gen-table: nosuch -->\n", "page.md")


README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:40])
    assert "pip install torch==2.13.0 -e . && protoseg demo -o demo-out" in head
    assert "pip install torch==2.13.0 -e '.[test]' && python -m pytest -q" in head


def test_readme_links_point_to_files_that_exist():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link.split("#")[0] for link in links if not re.match(r"^[a-z]+://|^#|^mailto:", link)]
    assert local, "the README links to no documentation page"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


DEFAULT_HEADLINE_SEED = 1357  # no training or decision of default (2.2.0, 2.3.0) saw it


def test_readme_headline_of_default_is_its_metrics_json():
    metrics = json.loads((DOCS / "default-model-test-metrics.json").read_text())
    hits = metrics["hits"]["all"]
    beam = hits["classes"].index("beam")
    row = next(line for line in README.splitlines() if line.startswith("| `default` |"))
    assert metrics["model"] == "default" and f"| {metrics['model_version']} |" in row
    assert f"{metrics['n_events']} events of seed {DEFAULT_HEADLINE_SEED} (pixels: {metrics['pixels']['n_images']})" in row
    # the command the README gives to reproduce the row simulates those events
    assert f"protoseg simulate -o r.h5 -n {metrics['n_events']} --seed {DEFAULT_HEADLINE_SEED} --workers 2" in README
    assert f"{hits['efficiency'][beam]:.3f} / {hits['purity'][beam]:.3f}" in row, row
    pixels = metrics["pixels"]
    assert f"| **{pixels['iou'][metrics['classes'].index('beam')]:.3f}** | **{pixels['miou']:.3f}** |" in row, row


def test_readme_row_of_tiramisu_gpu_is_its_metrics_json():
    metrics = json.loads((DOCS / "tiramisu-gpu-test-metrics.json").read_text())
    beam = metrics["classes"].index("beam")
    row = next(line for line in README.splitlines() if line.startswith("| `tiramisu-gpu` |"))
    assert f"| {metrics['iou'][beam]:.3f} | {metrics['miou']:.3f} |" in row, row
