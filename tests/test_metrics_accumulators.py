"""Accumulators and threshold policies: C15, C16, Top-k Loc rules, the SAT rule, DDP-style reduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_metrics import reference_box_counts

from wsolbench.metrics.accumulators import BoxAccumulator, MaskAccumulator
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import EVAL_PROTOCOLS, get_protocol, threshold_list

TAUS = [0, 0.3, 0.6, 0.9]


def c15_maps() -> tuple[np.ndarray, list]:
    a = np.zeros((10, 10))
    a[1:7, 1:7] = 0.5
    a[2:6, 2:6] = 1.0
    b = np.zeros((10, 10))
    b[0:3, 0:3] = 1.0
    b[7:9, 7:9] = 0.9
    return np.stack([a, b]), [np.array([[1, 1, 6, 6]]), np.array([[7, 7, 8, 8]])]


def test_c15_counts_and_maxboxacc():
    maps, gts = c15_maps()
    acc = BoxAccumulator(get_protocol("wsolevaluation"), TAUS)
    acc.update_normalized(maps, gts, [0, 0])
    counts = acc.counts()
    np.testing.assert_array_equal(counts["v1"], [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(counts["v2"], [[2, 2, 2, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    res = acc.result()
    assert res.metrics["maxboxacc"] == 50.0
    assert [res.metrics[f"maxboxaccv2_iou{d}"] for d in (30, 50, 70)] == [100.0, 50.0, 50.0]
    assert res.metrics["maxboxaccv2"] == pytest.approx(200 / 3)
    assert res.thresholds["maxboxaccv2_iou70"] == 0.0 and res.thresholds["maxboxaccv2_iou30"] == 0.0
    assert "top1_loc" not in res.metrics and res.policy == "oracle-test"
    np.testing.assert_array_equal(
        counts["v2"], reference_box_counts(maps, gts, TAUS, (30, 50, 70), "wsolevaluation", True)
    )
    v2 = res.curves[res.curves.curve == "boxacc_v2"]
    assert list(v2[v2.iou_threshold == 30].value) == [100.0, 100.0, 100.0, 50.0]
    assert set(res.curves.curve) == {"boxacc", "boxacc_v2"}


def test_curves_are_those_of_the_counts_when_result_was_taken():
    maps, gts = c15_maps()
    acc = BoxAccumulator(get_protocol("wsolevaluation"), TAUS)
    acc.update_normalized(maps, gts, [0, 0])
    res = acc.result()
    acc.update_normalized(maps[:1], gts[:1], [0])  # after result(), before its curves are first read
    boxacc = res.curves[res.curves.curve == "boxacc"]
    assert list(boxacc[boxacc.iou_threshold == 70].value) == [50.0, 50.0, 0.0, 0.0]
    assert res.curves is res.curves


def test_c16_max_over_gt_boxes():
    m = np.zeros((1, 10, 10))
    m[0, 5:9, 5:9] = 1.0
    acc = BoxAccumulator(get_protocol("wsolevaluation"), [0.5])
    acc.update_normalized(m, [np.array([[0, 0, 2, 2], [5, 5, 9, 9]])], [0])
    assert acc.result().metrics["maxboxaccv2"] == 100.0


def test_topk_loc_and_strict_rule():
    # one image whose box IoU is exactly 0.5 at τ = 0.5: 1x2 block predicted as (x, y, x+2, y+1) = 6 px
    # (+1 convention) against a GT of 3 px inside it → IoU 3/6
    m = np.zeros((1, 6, 6))
    m[0, 2, 2:4] = 1.0
    gt = [np.array([[2, 2, 4, 2]])]
    logits = torch.tensor([[0.1, 3.0, 0.2, 0.0, -1.0, -2.0]])
    results = {}
    for name in ("wsolevaluation", "ts_cam"):
        acc = BoxAccumulator(get_protocol(name), [0.5], iou_thresholds=(50,))
        acc.update_normalized(m, gt, torch.tensor([1]), logits)
        results[name] = acc.result().metrics
    assert (
        results["wsolevaluation"]["gt_known_loc"] == 100.0 and results["wsolevaluation"]["top1_loc"] == 100.0
    )
    assert results["ts_cam"]["gt_known_loc"] == 100.0  # GT-known keeps ≥
    assert results["ts_cam"]["top1_loc"] == 0.0 and results["ts_cam"]["top5_loc"] == 0.0  # strict > 0.5
    acc = BoxAccumulator(get_protocol("wsolevaluation"), [0.5])
    acc.update_normalized(np.concatenate([m, m]), gt * 2, [1, 5], torch.cat([logits, logits]))
    metrics = acc.result().metrics
    assert (metrics["top1_cls"], metrics["top5_cls"], metrics["top1_loc"], metrics["top5_loc"]) == (
        50,
        50,
        50,
        50,
    )


def test_sat_rule_single_threshold():
    # image 1 is found at τ=0.3 only, image 2 at τ=0.6 only and classified right: GT-known ties
    # 50/50, Top-1 Loc breaks the tie for τ=0.6; every metric is read at that one τ
    a, b = np.zeros((10, 10)), np.zeros((10, 10))
    a[2:8, 2:8] = 0.5
    a[4, 4] = 1.0
    b[1:9, 1:9] = 0.5
    b[3:7, 3:7] = 1.0
    gts = [np.array([[2, 2, 7, 7]]), np.array([[3, 3, 6, 6]])]
    logits = np.array([[0.0, 1.0], [1.0, 0.0]])
    acc = BoxAccumulator(get_protocol("sat"), [0.3, 0.6])
    acc.update_normalized(np.stack([a, b]), gts, [0, 0], logits)
    res = acc.result()
    assert set(res.thresholds.values()) == {0.6}
    assert res.metrics["gt_known_loc"] == 50.0 and res.metrics["top1_loc"] == 50.0
    assert "code-MaxBoxAccV2" in res.rule
    per_metric = BoxAccumulator(get_protocol("wsolevaluation"), [0.3, 0.6])
    per_metric.update_normalized(np.stack([a, b]), gts, [0, 0], logits)
    assert per_metric.result().thresholds["gt_known_loc"] == 0.3  # first of the tied τ


def test_fixed_policies_and_val_handover():
    maps, gts = c15_maps()
    acc = BoxAccumulator(get_protocol("wsolevaluation"), TAUS)
    acc.update_normalized(maps, gts, [0, 0])
    fixed = acc.result("fixed", 0.9)
    assert fixed.metrics["maxboxaccv2_iou30"] == 50.0 and set(fixed.thresholds.values()) == {0.9}
    assert acc.result("fixed", [0.6, 0.9]).metrics["maxboxaccv2_iou30"] == 100.0
    oracle = acc.result()
    assert acc.result("fixed", oracle.thresholds).metrics == oracle.metrics
    with pytest.raises(ValueError, match="0.5 is not among"):
        acc.result("fixed", 0.5)
    with pytest.raises(ValueError, match="no τ for gt_known_loc"):
        acc.result("fixed", {"maxboxacc": 0.3})
    with pytest.raises(ValueError, match="realised by the engine"):
        acc.result("val")
    with pytest.raises(ValueError, match="needs fixed_thresholds"):
        acc.result("fixed")


def test_shards_sum_to_one_pass():
    rng = np.random.default_rng(3)
    protocol = get_protocol("wsolevaluation", crop_size=32)
    raw = torch.from_numpy(rng.random((6, 4, 4)))
    gts = [np.tile(rng.integers(0, 16, 2), 2) + np.array([0, 0, 10, 12]) for _ in range(6)]
    labels, logits = torch.arange(6) % 3, torch.from_numpy(rng.random((6, 3)))
    thresholds = threshold_list(0.01)
    whole = BoxAccumulator(protocol, thresholds)
    whole.update(raw, gts, labels, logits)
    shards = [BoxAccumulator(protocol, thresholds) for _ in range(2)]
    shards[0].update(raw[:4], gts[:4], labels[:4], logits[:4])
    shards[1].update(raw[4:], gts[4:], labels[4:], logits[4:])
    merged = BoxAccumulator(protocol, thresholds)
    merged.merge(shards[0])
    merged.merge(shards[1])
    others = iter(shards[1].counts().values())

    def all_reduce_sum(
        array: np.ndarray,
    ) -> None:  # what torch.distributed.all_reduce does to a shared buffer
        torch.from_numpy(array).add_(torch.from_numpy(next(others)))

    shards[0].reduce(all_reduce_sum)
    for acc in (merged, shards[0]):
        for key, array in whole.counts().items():
            np.testing.assert_array_equal(acc.counts()[key], array, err_msg=key)
        assert acc.result().metrics == whole.result().metrics
    with pytest.raises(ValueError, match="same protocol"):
        merged.merge(BoxAccumulator(protocol, [0.5]))


def test_mixed_logits_and_bad_boxes_raise():
    acc = BoxAccumulator(get_protocol("wsolevaluation"), [0.5])
    m = np.zeros((1, 8, 8))
    acc.update_normalized(m, [np.array([[0, 0, 3, 3]])], [0], np.zeros((1, 2)))
    acc.update_normalized(m, [np.array([[0, 0, 3, 3]])], [0])
    with pytest.raises(ValueError, match="logits were given for 1 of 2"):
        acc.result()
    with pytest.raises(RuntimeError, match="img7: GT box"):
        acc.update_normalized(m, [np.array([[3, 0, 1, 3]])], [0], names=["img7"])
    with pytest.raises(ValueError, match="no GT box"):
        acc.update_normalized(m, [np.zeros((0, 4))], [0])
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        BoxAccumulator(get_protocol("wsolevaluation"), [0.5, 1.0])


def test_protocol_registry():
    assert set(EVAL_PROTOCOLS) == {"wsolevaluation", "sat", "ts_cam", "scm"}
    assert get_protocol("sat").frame.resize == 256 and get_protocol("sat").frame.crop == 224
    assert get_protocol("ts_cam", crop_size=64).frame.resize == 64
    assert len(threshold_list(0.001)) == 1000 and threshold_list(0.01)[-1] == 0.99
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        get_protocol("cam")


def test_update_prepares_raw_maps():
    protocol = get_protocol("wsolevaluation", crop_size=16)
    raw = torch.zeros((1, 4, 4))
    raw[0, 1:3, 1:3] = 5.0
    acc = BoxAccumulator(protocol, [0.5])
    acc.update(raw, [torch.tensor([[4, 4, 11, 11]])], torch.tensor([0]))
    direct = BoxAccumulator(protocol, [0.5])
    direct.update_normalized(normalize_maps(protocol, raw), [np.array([[4, 4, 11, 11]])], [0])
    for key, array in direct.counts().items():
        np.testing.assert_array_equal(acc.counts()[key], array)


def test_update_names_label_errors():
    """The raw-map `update` of both accumulators passes the image ids on to their errors."""
    protocol = get_protocol("wsolevaluation", crop_size=8)
    raw = np.random.default_rng(0).random((1, 4, 4))
    with pytest.raises(RuntimeError, match="img7: GT box"):
        BoxAccumulator(protocol, [0.5]).update(raw, [np.array([[3, 0, 1, 3]])], [0], names=["img7"])
    with pytest.raises(ValueError, match="img8: label map"):
        MaskAccumulator(protocol, [0.5]).update(raw, np.full((1, 8, 8), 7, np.uint8), names=["img8"])
