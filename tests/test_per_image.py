"""Per-image results: exact IoU codes, recording in the accumulator, the .npz round trip, errors."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench.errors import WsolbenchError
from wsolbench.metrics import per_image
from wsolbench.metrics.accumulators import BoxAccumulator
from wsolbench.metrics.protocols import get_protocol, threshold_list
from wsolbench.stats.bootstrap import Scored, point_values


def test_codes_reproduce_float_comparisons_exactly():
    near = [0.0, 1.0, 0.3, 0.5, 0.7, 1 / 3, 2 / 3, 0.12345678, 0.99995]
    values = []
    for x in near:
        values += [x, np.nextafter(x, 0.0), np.nextafter(x, 1.0)]
    values += [d / 100 for d in range(101)] + [np.nextafter(d / 100, 2.0) for d in range(100)]
    iou = np.clip(np.array(values), 0, 1)
    codes = per_image.encode_iou(iou)
    assert codes.dtype == np.uint16 and codes.max() == 20000
    for d in range(101):
        np.testing.assert_array_equal(per_image.at_least(codes, d), iou >= d / 100, err_msg=f"≥ {d}")
        np.testing.assert_array_equal(per_image.above(codes, d), iou > d / 100, err_msg=f"> {d}")
    assert np.abs(per_image.decode_iou(codes) - iou).max() <= 1e-4
    # hand-checked codes: 0.5 exactly is 2·5000; just above is 2·5000 + 1; just below 2·4999 + 1
    assert per_image.encode_iou(np.array([0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0)])).tolist() == \
        [10000, 10001, 9999]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        per_image.encode_iou(np.array([1.2]))


def random_batch(rng: np.random.Generator, n: int, size: int = 16, classes: int = 7):
    maps = rng.random((n, size, size)) ** 3
    gts = []
    for _ in range(n):
        x0, y0 = rng.integers(0, size // 2, 2)
        x1, y1 = np.array([x0, y0]) + rng.integers(2, size // 2, 2)
        gts.append(np.array([[x0, y0, x1, y1]]))
    return maps, gts, rng.integers(0, classes, n), rng.normal(size=(n, classes))


@pytest.mark.parametrize("protocol_name", ["wsolevaluation", "sat", "ts_cam"])
def test_recorded_images_give_back_every_metric(protocol_name):
    rng = np.random.default_rng(3)
    protocol = get_protocol(protocol_name, crop_size=16, resize_size=16)
    thresholds = threshold_list(0.05)
    acc = BoxAccumulator(protocol, thresholds, record_images=True)
    for start in (0, 9):
        maps, gts, labels, logits = random_batch(rng, 9)
        acc.update_normalized(maps, gts, labels, logits, names=[f"img{start + i}" for i in range(9)])
    recorded = acc.per_image()
    assert recorded.image_ids.tolist() == [f"img{i}" for i in range(18)]
    assert recorded.protocol == protocol_name and recorded.strict_topk == protocol.strict_topk
    oracle = acc.result()
    assert point_values(Scored(recorded)) == oracle.metrics
    fixed_taus = {key: thresholds[3] for key in oracle.thresholds}
    fixed = acc.result("fixed", fixed_taus)
    assert point_values(Scored(recorded, "fixed", fixed_taus)) == fixed.metrics


def test_round_trip_and_no_logits(tmp_path):
    rng = np.random.default_rng(0)
    acc = BoxAccumulator(get_protocol("wsolevaluation", crop_size=16), threshold_list(0.1), record_images=True)
    maps, gts, labels, logits = random_batch(rng, 5, classes=3)
    acc.update_normalized(maps, gts, labels, logits, names=list("abcde"))
    recorded = acc.per_image()
    assert (recorded.top5[:, 3:] == per_image.NO_CLASS).all()  # 3 classes: two empty top-5 slots
    path = per_image.save(recorded, tmp_path / "per_image.npz")
    loaded = per_image.load(path)
    for field in ("image_ids", "labels", "top5", "thresholds", "iou_v1", "iou_v2"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(recorded, field))
        assert getattr(loaded, field).dtype == getattr(recorded, field).dtype
    assert (loaded.iou_thresholds, loaded.protocol, loaded.strict_topk, loaded.selection) == \
        (recorded.iou_thresholds, recorded.protocol, recorded.strict_topk, recorded.selection)
    assert not list(tmp_path.glob(".*tmp"))
    unclassified = BoxAccumulator(get_protocol("wsolevaluation", crop_size=16), [0.5], record_images=True)
    unclassified.update_normalized(maps, gts, labels)
    assert not unclassified.per_image().classified
    assert "top1_cls" not in point_values(Scored(unclassified.per_image()))


def test_bad_files_and_misuse_raise(tmp_path):
    with pytest.raises(WsolbenchError, match="no per-image results"):
        per_image.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(WsolbenchError, match="junk.npz: not a readable"):
        per_image.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", image_ids=np.array(["a"]))
    with pytest.raises(WsolbenchError, match="missing array"):
        per_image.load(tmp_path / "partial.npz")
    with pytest.raises(ValueError, match="record_images=True"):
        BoxAccumulator(get_protocol("wsolevaluation"), [0.5]).per_image()

