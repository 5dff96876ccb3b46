"""A run SIGKILLed mid-epoch and resumed ends exactly like an uninterrupted one (CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from engine_toy import TOY, make_dataset, overrides

from wsolbench.engine.runner import execute, plan_runs

HERE = Path(__file__).resolve().parent


def test_kill_mid_epoch_then_resume_is_identical(tmp_path) -> None:
    make_dataset(tmp_path / "data" / "synthetic")
    # 16 images, batch 4: steps 1–4 are epoch 1, 5–8 epoch 2; last.pt every 2 steps → killed after
    # step 7, the run resumes from the mid-epoch checkpoint of step 6 and redoes step 7.
    settings = overrides(tmp_path / "data", tmp_path / "runs", **{"train.checkpoint_every_steps": 2})
    killed = subprocess.run(
        [sys.executable, str(HERE / "engine_toy.py"), "--kill-after-step", "7", "train", "--method", TOY,
         "--experiment", "killed", *[a for s in settings for a in ("--set", s)]],
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    path = tmp_path / "runs" / "killed" / "synthetic" / f"{TOY}-full-seed0"
    assert not (path / "metrics.json").exists() and (path / ".lock").exists()  # a crash leaves its lock
    steps = [json.loads(line)["step"] for line in (path / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 7

    again = plan_runs([TOY], ["synthetic"], overrides=settings, experiment="killed")
    (resumed,) = execute(again, resume=True)
    (straight,) = execute(plan_runs([TOY], ["synthetic"], overrides=settings, experiment="straight"))
    assert resumed == path
    a = json.loads((resumed / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    assert a.pop("experiment") == "killed" and b.pop("experiment") == "straight"
    assert a == b

    def losses(run: Path) -> list[tuple]:
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return [(r["step"], r.get("kind"), r["lr"], r["loss"]) for r in records]

    assert losses(resumed) == losses(straight)  # the killed run's step-7 line was replaced, not duplicated
