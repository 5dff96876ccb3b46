"""A hand-made experiment (run directories per the documented schema) shared by the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from wsolbench.reports.runs import load_run_frame

IMAGES = 3
SIZE = 32


def _metrics(method: str, backbone: str | None, regime: str, seed: int, params: int, test: dict) -> dict:
    return {
        "experiment": "exp", "dataset": "synthetic", "method": method, "backbone": backbone,
        "regime": regime, "seed": seed, "trainable_params": params,
        "results": [
            {"split": "val", "eval_protocol": "wsolevaluation", "threshold_policy": "oracle-test",
             "checkpoint": "last", "metrics": {k: v - 1.0 for k, v in test.items()}, "thresholds": {}},
            {"split": "test", "eval_protocol": "wsolevaluation", "threshold_policy": "oracle-test",
             "checkpoint": "last", "metrics": test, "thresholds": {"maxboxacc": 0.3}},
        ],
    }


def _curves(scale: float, with_pixels: bool) -> str:
    rows = []
    for tau in np.arange(0.0, 1.0, 0.1):
        for iou in (30, 50, 70):
            value = scale * (1 - abs(tau - 0.4)) * (100 - iou) / 100
            rows.append({"curve": "boxacc_v2", "iou_threshold": iou, "threshold": tau, "value": value,
                         "precision": None, "recall": None})
        if with_pixels:
            rows.append({"curve": "pxprec_pxrec", "iou_threshold": None, "threshold": tau, "value": None,
                         "precision": 0.3 + 0.6 * tau, "recall": 1.0 - tau})
    frame = pd.DataFrame(rows).assign(split="test", eval_protocol="wsolevaluation")
    return frame.to_csv(index=False)


def _log(terms: list[str]) -> str:
    lines = []
    for step in range(1, 6):
        record = {"step": step, "epoch": (step - 1) // 2, "lr": 1e-3, "images_per_s": 100.0}
        record.update({t: 2.0 / step + 0.1 * i for i, t in enumerate(terms)})
        if step == 5:
            record["val_maxboxaccv2"] = 50.0  # an end-of-epoch validation record, not a loss term
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def _samples(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image_ids": np.array([f"test/img_{i}.png" for i in range(IMAGES)]),
        "images": rng.integers(0, 255, (IMAGES, SIZE, SIZE, 3), dtype=np.uint8),
        "maps": rng.random((IMAGES, SIZE, SIZE), dtype=np.float32),
        "pred_boxes": np.array([[4, 4, 20, 24]] * IMAGES),
        "gt_boxes": np.array([[6, 2, 22, 26]] * IMAGES),
        "threshold": np.array(0.3),
    }


# (method, backbone, regime, seed, shots, blocks, trainable params, test metrics)
RUNS = [
    ("sat", "deit_tiny_patch16_224", "full", 0, 0, 0, 90000,
     {"maxboxaccv2": 60.0, "top1_loc": 50.0, "gt_known_loc": 70.0, "top1_cls": 80.0}),
    ("sat", "deit_tiny_patch16_224", "full", 1, 0, 0, 90000,
     {"maxboxaccv2": 62.0, "top1_loc": 52.0, "gt_known_loc": 71.0, "top1_cls": 81.0}),
    ("cam", "resnet18", "full", 0, 0, 0, 11000000,
     {"maxboxaccv2": 55.5, "top1_loc": 40.25, "gt_known_loc": 65.0, "top1_cls": 85.0, "pxap": 42.0}),
    ("sat", "deit_tiny_patch16_224", "few_shot", 0, 1, 0, 90000,
     {"maxboxaccv2": 40.0, "gt_known_loc": 50.0}),
    ("sat", "deit_tiny_patch16_224", "few_shot", 0, 5, 0, 90000,
     {"maxboxaccv2": 50.0, "gt_known_loc": 60.0}),
    ("sat", "deit_tiny_patch16_224", "parameter_efficient", 0, 0, 1, 2000,
     {"maxboxaccv2": 45.0, "gt_known_loc": 55.0}),
    ("sat", "deit_tiny_patch16_224", "parameter_efficient", 0, 0, 2, 8000,
     {"maxboxaccv2": 52.0, "gt_known_loc": 63.0}),
]


def write_experiment(root: Path) -> Path:
    """`root/exp` with the RUNS above: metrics.json, config.yaml, curves.csv, log.jsonl, samples.npz."""
    exp = root / "exp"
    for method, backbone, regime, seed, shots, blocks, params, test in RUNS:
        name = f"{method}-{regime}{shots or ''}{'b' + str(blocks) if blocks else ''}-seed{seed}"
        run = exp / "synthetic" / name
        run.mkdir(parents=True)
        metrics = _metrics(method, backbone, regime, seed, params, test)
        (run / "metrics.json").write_text(json.dumps(metrics))
        config = {"experiment": "exp", "seed": seed,
                  "regime": {"name": regime, "shots": shots, "trainable_blocks": blocks},
                  "eval": {"protocol": "wsolevaluation", "threshold_policy": "oracle-test"}}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "curves.csv").write_text(_curves(1.0 + seed, with_pixels=method == "cam"))
        terms = ["loss", "cls", "area", "norm"] if method == "sat" else ["loss", "cls"]
        (run / "log.jsonl").write_text(_log(terms))
        np.savez(run / "samples.npz", **_samples(seed))
    return exp


def test_fixture_loads_with_regime_settings(tmp_path) -> None:
    frame = load_run_frame([write_experiment(tmp_path)])
    runs = frame.drop_duplicates("run_dir")
    assert len(runs) == len(RUNS)
    assert sorted(runs["variant"]) == ["", "", "", "1 block", "1-shot", "2 blocks", "5-shot"]
    assert set(runs["own_policy"]) == {"oracle-test"}
