"""One error family for users: what a user can fix is a WsolbenchError and prints as one line;
anything else is a bug and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from wsolbench.datasets._build import require
from wsolbench.reports.references import load_references
from wsolbench.reports.runs import load_run_frame

from wsolbench.ablation_manifest import load_manifest
from wsolbench.annotations import Metadata
from wsolbench.cli import main
from wsolbench.engine.checkpoint import load_training_state
from wsolbench.engine.distributed import pick_device
from wsolbench.engine.regimes import per_class_subset
from wsolbench.engine.train import amp_dtype
from wsolbench.errors import WsolbenchError
from wsolbench.prepared_dataset import open_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_user_error_prints_one_line_without_traceback(tmp_path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == f"error: no runs (folders with metrics.json) under {tmp_path}\n"


def test_programming_error_is_not_turned_into_a_user_error(monkeypatch) -> None:
    def injected_bug() -> list[str]:
        raise ValueError("injected bug")

    monkeypatch.setattr("wsolbench.registry.METHODS.names", injected_bug)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error: injected bug" not in result.output


def test_programming_error_prints_its_traceback() -> None:
    inject = ("import sys; from wsolbench.registry import METHODS; from wsolbench.cli import main; "
              "METHODS.names = lambda: 1 / 0; sys.argv = ['bench.py', 'list']; main()")
    done = subprocess.run([sys.executable, "-c", inject], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ZeroDivisionError" in done.stderr


def _torch_file(path: Path) -> Path:
    torch.save({"model": {}}, path)
    return path


@pytest.mark.parametrize(("call", "builtin"), [
    (lambda tmp: load_training_state(tmp / "last.pt"), FileNotFoundError),
    (lambda tmp: load_training_state(_torch_file(tmp / "other.pt")), ValueError),
    (lambda tmp: open_dataset(tmp), FileNotFoundError),
    (lambda tmp: require(tmp / "CUB_200_2011", "the CUB archive"), FileNotFoundError),
    (lambda tmp: per_class_subset(Metadata(["a.jpg"], {"a.jpg": 0}), 2, seed=0), ValueError),
    (lambda tmp: amp_dtype("fp16", torch.device("cpu")), ValueError),
    (lambda tmp: load_run_frame([tmp]), ValueError),
    (lambda tmp: load_references(_text(tmp / "refs.yaml", "groups: [")), ValueError),
    (lambda tmp: load_manifest(_text(tmp / "ablation.json", '{"method": "sat"}')), ValueError),
])
def test_user_errors_are_wsolbench_errors_with_their_old_builtin_base(tmp_path, call, builtin) -> None:
    with pytest.raises(WsolbenchError) as caught:
        call(tmp_path)
    assert isinstance(caught.value, builtin)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_cuda_without_a_gpu_is_a_user_error() -> None:
    with pytest.raises(WsolbenchError, match="no CUDA device"):
        pick_device("cuda")


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
