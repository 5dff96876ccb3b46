"""`bench.py score` end to end on a subset of the shipped CUB test metadata, and its bad-input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reference_metrics import reference_box_counts

from wsolbench.annotations import EvalFrame, read_metadata, write_metadata
from wsolbench.cli import main
from wsolbench.metrics.maps import normalize_map
from wsolbench.metrics.protocols import get_protocol, threshold_list

ROOT = Path(__file__).resolve().parents[1]
CUB_TEST = ROOT / "datasets" / "wsolevaluation" / "metadata" / "CUB" / "test"
OPENIMAGES_VAL = ROOT / "datasets" / "wsolevaluation" / "metadata" / "OpenImages" / "val"
MASK_ROOT = ROOT / "tests" / "data" / "openimages_masks"


@pytest.fixture(scope="module")
def cub_subset(tmp_path_factory) -> tuple[Path, Path, list, list]:
    """40 CUB test images (two worker chunks) with blob maps near their GT box, some off target."""
    root = tmp_path_factory.mktemp("score")
    metadata = read_metadata(CUB_TEST)
    subset = metadata.subset(metadata.image_ids[::145][:40])
    write_metadata(root / "meta", subset)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224:16, 0:224:16] + 8  # a 14 x 14 feature grid, like a CAM
    maps, gts = [], []
    for image_id in subset.image_ids:
        w, h = subset.sizes[image_id]
        gt = np.array([EvalFrame().box(b, w, h) for b in subset.boxes[image_id]])
        x0, y0, x1, y1 = gt[0] + rng.integers(-20, 21, 4)
        cx, cy, sx, sy = (x0 + x1) / 2, (y0 + y1) / 2, max(abs(x1 - x0), 8) / 2, max(abs(y1 - y0), 8) / 2
        raw = np.exp(-(((xx - cx) / sx) ** 2) - ((yy - cy) / sy) ** 2) + 0.3 * rng.random((14, 14))
        m = normalize_map(get_protocol("wsolevaluation"), raw)
        path = root / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, m.astype(np.float32))
        maps.append(m.astype(np.float32).astype(np.float64))
        gts.append(gt)
    return root / "maps", root / "meta", maps, gts


def run_score(maps: Path, meta: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        main,
        [
            "score",
            "--scoremaps",
            str(maps),
            "--metadata",
            str(meta),
            "--cam-curve-interval",
            "0.01",
            "--output",
            str(out),
            *extra,
        ],
    )


@pytest.mark.parametrize("metric, multi_contour", [("maxboxaccv2", True), ("maxboxacc", False)])
def test_score_matches_reference(cub_subset, tmp_path, metric, multi_contour):
    maps_dir, meta, maps, gts = cub_subset
    out = tmp_path / "out.json"
    result = run_score(maps_dir, meta, out, "--metric", metric, "--workers", "2")
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    counts = reference_box_counts(
        maps, gts, threshold_list(0.01), (30, 50, 70), "wsolevaluation", multi_contour
    )
    expected = {str(d): 100 * counts[k].max() / 40 for k, d in enumerate((30, 50, 70))}
    assert record["per_iou"] == pytest.approx(expected, abs=1e-12)
    assert record["value"] == pytest.approx(
        np.mean(list(expected.values())) if multi_contour else expected["50"]
    )
    assert record["num_images"] == 40 and record["policy"] == "oracle-test" and record["metric"] == metric
    assert 0 < record["per_iou"]["70"] < record["per_iou"]["30"] <= 100
    assert set(record["thresholds"]) == {"30", "50", "70"}


def test_score_pxap_on_shipped_masks(tmp_path):
    metadata = read_metadata(OPENIMAGES_VAL)
    ids = ["val/0bt_c3/1cd9ac0169ec7df0.jpg", "val/0bt_c3/3a29f0b33894d4a6.jpg"]
    write_metadata(tmp_path / "meta", metadata.subset(ids))
    for image_id in ids:
        (tmp_path / "maps" / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "maps" / f"{image_id}.npy", np.full((224, 224), 0.5))
    result = run_score(
        tmp_path / "maps",
        tmp_path / "meta",
        tmp_path / "out.json",
        "--metric",
        "pxap",
        "--mask-root",
        str(MASK_ROOT),
    )
    assert result.exit_code == 0, result.output
    positives = 43031 + 833
    assert json.loads((tmp_path / "out.json").read_text())["value"] == pytest.approx(
        100 * positives / (2 * 224 * 224), abs=0.1
    )


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda p: p.unlink(), "no score map"),
        (lambda p: np.save(p, np.zeros((224, 200))), "shape"),
        (lambda p: np.save(p, np.full((224, 224), np.nan)), "NaN"),
        (lambda p: np.save(p, np.full((224, 224), 1.5)), r"\[0, 1\]"),
        (lambda p: np.save(p, np.zeros((224, 224), np.int64)), "floating point"),
    ],
)
def test_bad_maps_name_the_image_and_write_nothing(cub_subset, tmp_path, make_bad, message):
    maps_dir, meta, _, _ = cub_subset
    bad_dir = tmp_path / "maps"
    image_ids = read_metadata(meta).image_ids
    for image_id in image_ids:
        target = bad_dir / f"{image_id}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(maps_dir / f"{image_id}.npy")
    victim = bad_dir / f"{image_ids[35]}.npy"
    victim.unlink()
    np.save(victim, np.zeros((224, 224)))
    make_bad(victim)
    out = tmp_path / "out.json"
    result = run_score(bad_dir, meta, out)
    assert result.exit_code == 2, result.output
    assert image_ids[35] in result.output
    assert re.search(message, result.output)
    assert not out.exists() and list(tmp_path.glob(".out.json*")) == []


def test_metadata_without_boxes_or_masks_is_an_error(tmp_path):
    metadata = read_metadata(OPENIMAGES_VAL)
    write_metadata(tmp_path / "meta", metadata.subset(metadata.image_ids[:2]))
    (tmp_path / "maps").mkdir()
    result = run_score(tmp_path / "maps", tmp_path / "meta", tmp_path / "out.json", "--metric", "maxboxaccv2")
    assert result.exit_code == 2 and "needs boxes" in result.output
    result = run_score(tmp_path / "maps", tmp_path / "meta", tmp_path / "out.json", "--metric", "pxap")
    assert result.exit_code == 2 and "--mask-root" in result.output


def test_every_bad_map_is_reported_at_once(cub_subset, tmp_path):
    maps_dir, meta, _, _ = cub_subset
    bad_dir = tmp_path / "maps"
    bad_dir.mkdir()
    image_ids = read_metadata(meta).image_ids
    for image_id in image_ids:
        target = bad_dir / f"{image_id}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(maps_dir / f"{image_id}.npy")
    bad = image_ids[3:28]  # 25 bad maps across both worker chunks: missing, wrong shape, random bytes
    for k, image_id in enumerate(bad):
        victim = bad_dir / f"{image_id}.npy"
        victim.unlink()
        if k % 3 == 1:
            np.save(victim, np.zeros((10, 10)))
        elif k % 3 == 2:
            victim.write_bytes(np.random.default_rng(k).bytes(300))
    out = tmp_path / "out.json"
    for workers in ("1", "2"):
        result = run_score(bad_dir, meta, out, "--workers", workers)
        assert result.exit_code == 2, result.output
        assert "25 of 40 score maps" in result.output and "the first 20 below" in result.output
        listed = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
        assert [line.split(":")[0] for line in listed] == bad[:20]
        assert "no score map" in listed[0] and "shape" in listed[1] and "not a plain numpy array" in listed[2]
        assert not out.exists()
