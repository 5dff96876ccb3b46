"""Scoring saved maps never loads torch: `wsolbench.metrics`, the CLI module and `bench.py score` stay light
(`score` does not load pandas either)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from wsolbench.annotations import Metadata, write_metadata

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm")


def loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of `heavy` a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint('loaded:' + ','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.splitlines()[-1].removeprefix("loaded:").split(",") if m]


def test_metrics_package_imports_without_torch():
    modules = "accumulators", "boxes", "component_trees", "maps", "protocols", "pxap", "score"
    assert loaded_after("\n".join(f"import wsolbench.metrics.{m}" for m in modules)) == []


def test_cli_module_and_help_import_without_torch():
    code = "from wsolbench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert loaded_after(code) == []


def test_score_command_runs_without_torch(tmp_path):
    ids = ["a/0.jpg", "a/1.jpg"]
    write_metadata(
        tmp_path / "meta",
        Metadata(ids, dict.fromkeys(ids, 0), dict.fromkeys(ids, (224, 224)), dict.fromkeys(ids, [(20, 30, 120, 140)])),
    )
    yy, xx = np.mgrid[0:224, 0:224]
    for k, image_id in enumerate(ids):
        path = tmp_path / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.exp(-((xx - 70 - 10 * k) ** 2 + (yy - 85) ** 2) / 2000.0))
    args = ["score", "--scoremaps", str(tmp_path / "maps"), "--metadata", str(tmp_path / "meta"),
            "--output", str(tmp_path / "score.json"), "--workers", "1"]
    code = f"from wsolbench.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code"
    assert loaded_after(code, HEAVY + ("pandas",)) == []
    assert (tmp_path / "score.json").is_file()
