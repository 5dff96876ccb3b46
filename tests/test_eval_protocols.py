"""Each official evaluator's defaults: thresholds, classification mode, SCM's predicted-class boxes, and
`maps_to_boxes` against the metric layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from engine_toy import TOY, ToyCAM, make_dataset, overrides
from PIL import Image

from wsolbench import maps_to_boxes
from wsolbench.annotations import IMAGENET_MEAN, IMAGENET_STD
from wsolbench.cli import main
from wsolbench.config import resolve
from wsolbench.contracts.method import Localization, MethodOutput, WSOLMethod
from wsolbench.engine.distributed import DistInfo
from wsolbench.engine.evaluate import accumulate, top1_class_maps
from wsolbench.engine.runner import execute, plan_runs
from wsolbench.metrics.accumulators import BoxAccumulator
from wsolbench.metrics.boxes import sweep_boxes, sweep_ious
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import get_protocol, official_evaluator
from wsolbench.prepared_dataset import open_dataset


def test_official_evaluator_defaults():
    sat_cub, sat_ilsvrc = official_evaluator("sat", "cub"), official_evaluator("sat", "ilsvrc")
    assert (sat_cub.thresholds, sat_cub.ten_crop) == ((0.4,), True)  # SAT evaluator.py
    assert (sat_ilsvrc.thresholds, sat_ilsvrc.ten_crop) == ((0.3,), False)  # SAT evaluator_ImageNet.py
    assert official_evaluator("sat", "openimages") == sat_cub  # the generic evaluator.py
    assert [official_evaluator("ts_cam", d).thresholds for d in ("cub", "ilsvrc", "synthetic")] == [
        (0.1,), (0.12,), (0.2,)]
    scm, wsol = official_evaluator("scm", "cub"), official_evaluator("wsolevaluation", "ilsvrc")
    assert (scm.thresholds, scm.cam_curve_interval) == ((), 0.01)
    assert (wsol.thresholds, wsol.cam_curve_interval) == ((), 0.001)
    assert not any(official_evaluator(p, d).ten_crop for p in ("ts_cam", "scm", "wsolevaluation")
                   for d in ("cub", "ilsvrc"))
    assert sat_cub.eval_layer("sat") == {"protocol": "sat", "threshold_policy": "fixed", "thresholds": [0.4],
                                         "cam_curve_interval": 0.01, "ten_crop": True}
    assert scm.eval_layer("scm")["threshold_policy"] == "oracle-test"
    with pytest.raises(ValueError, match="did you mean 'ts_cam'"):
        official_evaluator("ts-cam", "cub")


def ring_map() -> np.ndarray:
    """10x10: 0.3 on rows/cols 1–6, 1.0 on rows/cols 2–5 (GT (1, 1, 6, 6) is the outer square)."""
    m = np.zeros((10, 10))
    m[1:7, 1:7] = 0.3
    m[2:6, 2:6] = 1.0
    return m


@pytest.mark.parametrize(
    ("name", "dataset", "expected"),
    [
        # SAT at τ 0.4: the 1.0 block, box (2,2,6,6) (exclusive end): IoU 25/36 = 0.694 → IoU30/50 yes, 70 no
        ("sat", "cub", {"gt_known_loc": 100, "top1_loc": 100, "maxboxaccv2": 200 / 3}),
        # TS-CAM at θ 0.1: q 76 > 25, the whole ring, box (1,1,7,7) unclipped: IoU 36/49 = 0.735 > 0.5
        ("ts_cam", "cub", {"gt_known_loc": 100, "top1_loc": 100, "maxboxaccv2_iou70": 100}),
    ],
)
def test_fixed_threshold_protocols_on_a_known_map(name, dataset, expected):
    official = official_evaluator(name, dataset)
    protocol = get_protocol(name, crop_size=10, resize_size=10)
    acc = BoxAccumulator(protocol, np.arange(0, 1, official.cam_curve_interval))
    acc.update_normalized(ring_map()[None], [np.array([[1, 1, 6, 6]])], [0], np.array([[2.0, 1.0]]))
    result = acc.result("fixed", list(official.thresholds))
    assert set(result.thresholds.values()) == set(official.thresholds)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value), key


def test_scm_reads_box_metrics_from_the_top1_class_map():
    gt_map, other = np.zeros((2, 10, 10)), np.zeros((2, 10, 10))
    gt_map[:, 1:4, 1:4] = 1.0  # GT-class maps: box (1,1,4,4) vs GT (1,1,3,3): IoU 9/16
    other[:, 6:9, 6:9] = 1.0  # the other class: box far from GT, IoU 0
    boxes = [np.array([[1, 1, 3, 3]])] * 2
    labels = [0, 0]
    logits = np.array([[2.0, 1.0], [1.0, 2.0]])  # image 0 predicted right, image 1 predicts class 1
    top1 = np.stack([gt_map[0], other[1]])

    def run(name):
        acc = BoxAccumulator(get_protocol(name, crop_size=10), [0.5])
        acc.update_normalized(gt_map, boxes, labels, logits, top1_normalized=top1)
        return acc.result().metrics

    scm, wsol = run("scm"), run("wsolevaluation")
    assert (scm["gt_known_loc"], wsol["gt_known_loc"]) == (50.0, 100.0)
    assert scm["maxboxaccv2_iou50"] == 50.0 and wsol["maxboxaccv2_iou50"] == 100.0
    # Top-1 Loc needs the right class; Top-5 Loc reads the GT class's map among the top 5
    assert scm["top1_loc"] == wsol["top1_loc"] == 50.0 and scm["top5_loc"] == wsol["top5_loc"] == 100.0
    acc = BoxAccumulator(get_protocol("scm", crop_size=10), [0.5])
    with pytest.raises(ValueError, match="top-1 predicted class"):
        acc.update_normalized(gt_map, boxes, labels, logits)
    acc.update_normalized(gt_map, boxes, labels)  # no logits, no prediction: the given maps are scored
    assert acc.result().metrics["gt_known_loc"] == 100.0


def test_top1_class_maps_localize_the_predicted_class():
    torch.manual_seed(0)
    model = ToyCAM(num_classes=3, backbone="toy", pretrained=False, img_size=None, drop_path_rate=None,
                   backbone_kwargs={}, width=4).eval()
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    found = model.localize(images, class_ids=labels)
    maps = top1_class_maps(model, images, labels, found.logits, found.maps)
    predicted = found.logits.argmax(-1)
    assert (predicted != labels).any() and (predicted == labels).any()
    torch.testing.assert_close(maps, model.localize(images, class_ids=predicted).maps)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "synthetic")
    return root


class Corners(WSOLMethod):
    """A parameter-free method whose class is "more red in the top-left (0) or bottom-right (1) 8x8 corner",
    so that which crops it sees changes its prediction; its map is the red channel at 1/4 resolution."""

    def forward(self, images: torch.Tensor) -> MethodOutput:
        red = images[:, 0]
        return MethodOutput(10 * torch.stack([red[:, :8, :8].mean((1, 2)), red[:, -8:, -8:].mean((1, 2))], 1))

    def localize(self, images: torch.Tensor, class_ids: torch.Tensor | None = None) -> Localization:
        return Localization(self(images).logits, torch.nn.functional.avg_pool2d(images[:, 0:1], 4)[:, 0])


def reference_top1(model, prepared, metadata, resize: int, crop: int, ten_crop: bool) -> float:
    """Top-1 accuracy (%): the centre crop of the resized image, or the softmax averaged over the 4 corner
    + centre crops and their mirrors."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    hits = 0
    for image_id in metadata.image_ids:
        image = Image.open(prepared.image_root / image_id).convert("RGB").resize((resize, resize), Image.BILINEAR)
        x = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std
        c, r = (resize - crop) // 2, resize - crop
        corners = ((c, c), (0, 0), (0, r), (r, 0), (r, r)) if ten_crop else ((c, c),)
        crops = [x[:, a:a + crop, b:b + crop] for a, b in corners]
        crops += [v.flip(-1) for v in crops] if ten_crop else []
        probs = model(torch.stack(crops)).logits.softmax(-1).mean(0)
        hits += int(probs.argmax()) == metadata.labels[image_id]
    return 100 * hits / len(metadata)


def test_ten_crop_classification_as_sat_evaluates(data_root, tmp_path):
    model = Corners(num_classes=2)
    prepared = open_dataset(data_root / "synthetic")
    test = prepared.split("test")
    info = DistInfo(rank=0, world_size=1, device=torch.device("cpu"))
    results = {}
    for ten_crop in (False, True):
        config = resolve(method="engine_toy_cam", dataset="synthetic", overrides=[
            *overrides(data_root, tmp_path), "eval.protocol=sat", f"eval.ten_crop={ten_crop}"])
        results[ten_crop] = accumulate(model, prepared, test, config, info).result().metrics
        expected = reference_top1(model, prepared, test, resize=36, crop=32, ten_crop=ten_crop)
        assert results[ten_crop]["top1_cls"] == pytest.approx(expected)
    assert results[True]["top1_cls"] != results[False]["top1_cls"]  # the two modes do differ here
    assert results[True]["gt_known_loc"] == results[False]["gt_known_loc"]  # maps: the centre crop only


def test_maps_to_boxes_agrees_with_the_metric_layer():
    rng = np.random.default_rng(0)
    raw = rng.random((6, 7, 7)) ** 3
    gt = [np.array([[int(a), int(b), int(a) + 15, int(b) + 20]]) for a, b in rng.integers(0, 40, (6, 2))]
    for name in ("wsolevaluation", "sat", "ts_cam", "scm"):
        protocol = get_protocol(name, crop_size=64, resize_size=72)
        prepared = normalize_maps(protocol, raw)
        for tau in (0.2, 0.45):
            one = maps_to_boxes(raw, tau, name, crop_size=64, resize_size=72)
            every = maps_to_boxes(torch.from_numpy(raw), tau, protocol, all_boxes=True)
            for k in range(len(raw)):
                v1, v2 = sweep_ious(protocol, prepared[k], np.array([tau]), gt[k])
                assert one[k].shape == (1, 4) and one[k].dtype == np.int64
                assert _iou(one[k], gt[k]) == pytest.approx(v1[0])
                assert _iou(every[k], gt[k]) == pytest.approx(v2[0])


def _iou(boxes: np.ndarray, gt: np.ndarray) -> float:
    """Best inclusive (+1) IoU of any box against any GT box, written out plainly."""
    best = 0.0
    for a in boxes:
        for b in gt:
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
            best = max(best, iw * ih / union)
    return best


def test_maps_to_boxes_hand_cases():
    m = np.zeros((1, 10, 10))
    m[0, 0, 0:8] = 1.0  # an 8-pixel line: contourArea 0
    m[0, 3:5, 7:9] = 1.0  # a 2x2 block
    kw = dict(crop_size=10, resize_size=10)
    assert maps_to_boxes(m, 0.5, "wsolevaluation", **kw)[0].tolist() == [[7, 3, 9, 5]]
    assert sorted(maps_to_boxes(m, 0.5, "wsolevaluation", all_boxes=True, **kw)[0].tolist()) == [
        [0, 0, 8, 1], [7, 3, 9, 5]]
    assert maps_to_boxes(m, 0.5, "sat", **kw)[0].tolist() == [[0, 0, 8, 1]]  # largest pixel count
    empty = np.zeros((1, 4, 4))
    assert [maps_to_boxes(empty, 0.5, p, crop_size=4, resize_size=4)[0].tolist()
            for p in ("wsolevaluation", "sat", "ts_cam")] == [[[0, 0, 0, 0]], [[0, 0, 4, 4]], [[0, 0, 1, 1]]]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        maps_to_boxes(m, 1.0)


@pytest.mark.parametrize("name", ["wsolevaluation", "ts_cam", "scm"])
def test_evaluate_cli_applies_the_official_defaults(data_root, tmp_path, name):
    (path,) = execute(plan_runs([TOY], ["synthetic"], overrides=overrides(data_root, tmp_path, **{"train.epochs": 1})))
    settings = [a for s in overrides(data_root, tmp_path) for a in ("--set", s)]  # includes a 0.01 threshold step
    out = tmp_path / name
    result = CliRunner().invoke(main, ["evaluate", "--method", TOY, "--dataset", "synthetic", "--protocol", name,
                                       "--checkpoint", str(path / "checkpoints/last.pt"), "--output", str(out),
                                       *settings])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())["eval"]
    official = official_evaluator(name, "synthetic").eval_layer(name)
    for key in ("protocol", "threshold_policy", "thresholds", "ten_crop"):
        assert saved[key] == official[key], key
    assert saved["cam_curve_interval"] == 0.01  # --set wins over the protocol's default
    entries = json.loads((out / "metrics.json").read_text())["results"]
    policies = [e["threshold_policy"] for e in entries if e["split"] == "test"]
    assert policies == (["oracle-test", "fixed"] if name == "ts_cam" else ["oracle-test"])
    if name == "ts_cam":
        assert set(entries[-1]["thresholds"].values()) == {0.2}


def test_only_wsolevaluation_scores_every_contour():
    # C15's image B: V1 keeps the 3x3 block (IoU 0 with the GT), only the all-contour rule boxes the 2x2 block
    b = np.zeros((1, 10, 10))
    b[0, 0:3, 0:3] = 1.0
    b[0, 7:9, 7:9] = 0.9
    results = {}
    for name in ("wsolevaluation", "ts_cam", "scm"):
        acc = BoxAccumulator(get_protocol(name, crop_size=10), [0, 0.3, 0.6, 0.9])
        acc.update_normalized(b, [np.array([[7, 7, 8, 8]])], [0])
        results[name] = acc.result().metrics["maxboxaccv2_iou30"]
    assert results == {"wsolevaluation": 100.0, "ts_cam": 0.0, "scm": 0.0}


def test_gt_box_scaling_order_per_protocol():
    # 61 / 112 · 224 is 121.999… in floating point, 61 · 224 / 112 is exactly 122
    box, width, height = (61, 0, 100, 50), 112, 112
    framed = {name: get_protocol(name, crop_size=224, resize_size=256).frame.box(box, width, height)
              for name in ("wsolevaluation", "ts_cam", "scm", "sat")}
    assert framed["wsolevaluation"] == (122, 0, 200, 100)
    assert framed["ts_cam"] == framed["scm"] == (121, 0, 200, 100)
    assert framed["sat"] == (int(61 / 112 * 256 - 16), 0, int(100 / 112 * 256 - 16), int(50 / 112 * 256 - 16))
    # a box touching the border is clipped to the last frame pixel by SAT / TS-CAM / SCM
    assert get_protocol("ts_cam").frame.box((0, 0, 300, 300), 300, 300) == (0, 0, 223, 223)


def test_sat_and_ts_cam_compute_in_float32():
    assert [get_protocol(n).map_dtype for n in ("wsolevaluation", "sat", "ts_cam", "scm")] == [
        "float64", "float32", "float32", "float64"]
    # SAT compares the float32 map with τ as float32: a pixel equal to float32(0.4) is not above 0.4
    m = np.zeros((6, 6), np.float32)
    m[1, 1] = 1.0
    m[3:5, 3:5] = np.float32(0.4)
    protocol = get_protocol("sat", crop_size=6, resize_size=6)

    def v1_box(prepared):
        _, v1, inverse = sweep_boxes(protocol, prepared, np.array([0.4]))
        return v1[inverse[0]].tolist()

    assert v1_box(m) == [1, 1, 2, 2]
    assert v1_box(m.astype(np.float64)) == [3, 3, 5, 5]  # in float64, float32(0.4) = 0.40000000596 > 0.4
