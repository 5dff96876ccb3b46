"""Run directories (lock, atomic files) and the results table."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from wsolbench.engine.checkpoint import save_checkpoint
from wsolbench.errors import BadFileError
from wsolbench.results import RESULT_COLUMNS, RunDir, RunLockedError, load_results, run_path, saved_config
from wsolbench.stats.runs import own_policy


def _metrics(method: str, seed: int, value: float) -> dict:
    return {
        "experiment": "exp",
        "dataset": "synthetic",
        "method": method,
        "backbone": "deit_tiny_patch16_224",
        "regime": "full",
        "seed": seed,
        "trainable_params": 123,
        "results": [
            {
                "split": "test",
                "eval_protocol": "wsolevaluation",
                "threshold_policy": "oracle-test",
                "checkpoint": "last",
                "metrics": {"maxboxaccv2": value, "top1_loc": value / 2},
                "thresholds": {"maxboxaccv2_iou50": 0.2},
            }
        ],
    }


def test_run_path_layout(tmp_path) -> None:
    assert run_path(tmp_path, "exp", "cub", "sat", "full", 3) == tmp_path / "exp" / "cub" / "sat-full-seed3"


def test_second_writer_gets_a_clear_error(tmp_path) -> None:
    run = tmp_path / "run"
    # A live process other than us holds the lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from wsolbench.results import RunDir;"
         "r = RunDir(sys.argv[1]); r.acquire(); print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"{run} is in use by process {holder.pid} on this host"):
            RunDir(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its stale lock is taken over.
    with RunDir(run) as again:
        assert (again.path / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert not (run / ".lock").exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a pid that is not alive here; on the other node it may well be
    (run / ".lock").write_text(f"node-b.cluster {pid}\n")
    with pytest.raises(RunLockedError) as raised:
        RunDir(run).acquire()
    message = str(raised.value)
    assert f"in use by process {pid} on host node-b.cluster" in message
    assert f"rm {run / '.lock'}" in message
    assert (run / ".lock").read_text() == f"node-b.cluster {pid}\n"  # untouched
    # The same dead pid on this host is a stale lock: taken over.
    (run / ".lock").write_text(f"{socket.gethostname()} {pid}\n")
    with RunDir(run):
        assert (run / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert not (run / ".lock").exists()


def test_an_unreadable_lock_is_refused_and_an_empty_unheld_one_taken_over(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("garbage\n")
    with pytest.raises(RunLockedError, match="in use by a process its lock file does not name"):
        RunDir(run).acquire()
    assert (run / ".lock").read_text() == "garbage\n"  # untouched
    # An empty file nobody holds: its writer died between creating and writing it.
    (run / ".lock").write_text("")
    with RunDir(run):
        assert (run / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert not (run / ".lock").exists()


def _race_for_lock(run, go, results) -> None:
    go.wait()
    try:
        held = RunDir(run)
        held.acquire()
    except RunLockedError:
        results.put("locked")
        return
    results.put("won")
    time.sleep(2)
    held.release()


def test_concurrent_takeover_of_a_stale_lock_has_one_winner(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".lock").write_text(f"{socket.gethostname()} {int(dead.stdout)}\n")
    context = multiprocessing.get_context("fork")
    go, results = context.Event(), context.Queue()
    racers = [context.Process(target=_race_for_lock, args=(run, go, results)) for _ in range(4)]
    for racer in racers:
        racer.start()
    go.set()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join(timeout=60)
    assert outcomes == ["locked", "locked", "locked", "won"]
    assert not (run / ".lock").exists()


def test_atomic_writes_leave_no_temp_files(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_json("metrics.json", {"a": 1})
    save_checkpoint(run, "last.pt", {"x": torch.ones(2)})
    run.append_log({"step": 1, "loss": 0.5})
    run.append_log({"step": 2, "loss": 0.25})
    names = sorted(p.name for p in run.path.rglob("*"))
    assert names == ["checkpoints", "last.pt", "log.jsonl", "metrics.json"]
    assert [json.loads(line)["step"] for line in (run.path / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert torch.equal(torch.load(run.checkpoints / "last.pt")["x"], torch.ones(2))


def test_failed_checkpoint_write_keeps_the_old_file(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    save_checkpoint(run, "last.pt", {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(run, "last.pt", {"epoch": 2, "bad": Unpicklable()})
    assert torch.load(run.checkpoints / "last.pt") == {"epoch": 1}
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.pt"]


def test_load_results_one_row_per_run_and_metric(tmp_path) -> None:
    for method, seed, value in [("sat", 0, 80.0), ("sat", 1, 82.0), ("cam", 0, 60.0)]:
        RunDir(run_path(tmp_path, "exp", "synthetic", method, "full", seed)).write_json(
            "metrics.json", _metrics(method, seed, value)
        )
    frame = load_results([tmp_path / "exp"])
    assert list(frame.columns) == RESULT_COLUMNS
    assert len(frame) == 6
    sat = frame[(frame.method == "sat") & (frame.metric == "maxboxaccv2")].sort_values("seed")
    assert sat.value.tolist() == [80.0, 82.0]
    assert set(frame.split) == {"test"} and set(frame.threshold_policy) == {"oracle-test"}


def test_load_results_names_a_malformed_file(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_text("metrics.json", "{not json")
    with pytest.raises(ValueError, match=r"run/metrics\.json: not valid JSON"):
        load_results([tmp_path])
    run.write_json("metrics.json", {"method": "sat", "dataset": "x"})
    with pytest.raises(ValueError, match=r"metrics\.json: missing key 'results'"):
        load_results([tmp_path])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_text_outputs_honour_the_umask(tmp_path, umask, mode) -> None:
    from wsolbench.annotations import Metadata, write_metadata

    previous = os.umask(umask)
    try:
        run = RunDir(tmp_path / "run")
        written = [run.write_text("config.yaml", "a: 1\n"), run.write_json("metrics.json", {"a": 1})]
        write_metadata(tmp_path / "meta", Metadata(["a.jpg"], {"a.jpg": 0}, {"a.jpg": (4, 4)}))
        written += sorted((tmp_path / "meta").iterdir())
    finally:
        os.umask(previous)
    assert len(written) == 6
    for path in written:
        assert oct(path.stat().st_mode & 0o777) == oct(mode), path


def test_saved_config_migrates_old_keys_and_names_a_bad_file(tmp_path):
    assert saved_config(tmp_path) is None and own_policy(tmp_path) == "oracle-test"
    (tmp_path / "config.yaml").write_text("protocol: few_shot\neval: {threshold_policy: val}\n")
    assert saved_config(tmp_path) == {"regime": "few_shot", "eval": {"threshold_policy": "val"}}
    assert own_policy(tmp_path) == "val"
    (tmp_path / "config.yaml").write_text("eval: [unclosed\n")
    with pytest.raises(BadFileError, match=r"config\.yaml: not valid YAML"):
        own_policy(tmp_path)
