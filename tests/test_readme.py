"""The README's reproduction table and Python API, and the docs they point to, stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wsolbench.reports.references import load_references, lookup

from wsolbench.contracts.method import WSOLMethod
from wsolbench.metrics.protocols import EVAL_PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = {"sat": "deit_small_patch16_224", "ts_cam": "deit_small_patch16_224", "scm": "deit_small_patch16_224",
            "cam": "resnet50"}
COLUMNS = {"Top-1 Loc": "top1_loc", "Top-5 Loc": "top5_loc", "GT-known": "gt_known_loc",
           "MaxBoxAccV2": "maxboxaccv2"}


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_reproduction_table_matches_the_references():
    text = section((ROOT / "README.md").read_text(), "Reproducing published numbers")
    rows = [line.strip("|").split("|") for line in text.splitlines() if re.match(r"^\| (sat|ts_cam|scm|cam) \|", line)]
    seen = {(r[0].strip(), r[1].strip()) for r in rows}
    assert seen == {(m, d) for m in BACKBONE for d in ("cub", "ilsvrc")}
    header = next(line for line in text.splitlines() if line.startswith("| method |")).strip("|").split("|")
    references = load_references()
    for row in rows:
        cells = dict(zip((h.strip() for h in header), (c.strip() for c in row), strict=True))
        published = lookup(references, cells["method"], cells["dataset"], BACKBONE[cells["method"]])
        assert cells["protocol"] in EVAL_PROTOCOLS
        for column, metric in COLUMNS.items():
            if cells[column]:
                assert float(cells[column]) == published[metric].value, (cells["method"], cells["dataset"], metric)
    for method in ("sat", "ts_cam", "scm"):  # each published checkpoint scored under its own protocol
        assert re.search(rf"evaluate --method {method} .*\n?.*--protocol {method}", text), method
    assert "--protocol wsolevaluation" in text and "method.pretrained=" in text


def test_python_api_example_runs(capsys):
    text = section((ROOT / "README.md").read_text(), "Python API")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README Python API", "exec"), {})
    shapes, box = capsys.readouterr().out.splitlines()[:2]
    assert shapes == "torch.Size([2, 10]) torch.Size([2, 4, 4])"
    assert re.fullmatch(r"\[\[\s*\d+\s+\d+\s+\d+\s+\d+\]\]", box)


@pytest.mark.parametrize("name", EVAL_PROTOCOLS)
def test_every_protocol_is_documented(name):
    assert f"\n## {name} " in (ROOT / "docs" / "protocols.md").read_text()


def test_localize_says_what_maps_are():
    doc = WSOLMethod.localize.__doc__ or ""
    assert "RAW" in doc and "maps_to_boxes" in doc and "docs/protocols.md" in doc


def test_every_file_named_in_the_architecture_doc_exists():
    """docs/architecture.md and the README's "What is where" name only files and folders that exist (a bare
    or partial name is looked up in the folders the doc abbreviates)."""
    readme = section((ROOT / "README.md").read_text(), "What is where")
    texts = [(ROOT / "docs" / "architecture.md").read_text(), readme]
    pattern = r"[\w./<>-]+\.py\b|[\w./<>-]+/[\w./<>-]+\.(?:yaml|md)\b|\b\w+/(?=[\s`|,)])"
    named = {token for text in texts for token in re.findall(pattern, text) if "<" not in token}
    assert len(named) > 40
    bases = [ROOT, *(ROOT / "wsolbench" / sub for sub in ("", "contracts", "engine", "metrics"))]
    for name in sorted(named):
        assert any((base / name).exists() for base in bases), name
    for gone in ("wsolbench/data.py", "wsolbench/method.py", "wsolbench/engine/protocols.py"):
        assert gone not in "".join(texts) and not (ROOT / gone).exists()
