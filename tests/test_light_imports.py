"""Run folders and reports never load torch: reading results and rendering reports stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm")


def loaded_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.splitlines()[-1].removeprefix("loaded:").split(",") if m]


def test_results_module_imports_without_torch():
    assert loaded_after("import wsolbench.results") == []


def test_reports_import_without_torch():
    modules = ("ablation", "html", "plots", "references", "report", "runs", "summary", "tables", "thresholds",
               "uncertainty")
    assert loaded_after("\n".join(f"import wsolbench.reports.{m}" for m in modules)
                        + "\nimport wsolbench.ablation_manifest\nimport wsolbench.prepared_dataset") == []
