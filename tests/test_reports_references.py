"""Published numbers: every entry sourced, and values equal to the published tables."""

from __future__ import annotations

import pytest
from wsolbench.reports.references import headline, load_references, lookup


@pytest.fixture(scope="module")
def refs():
    return load_references()


def test_every_entry_has_source_and_protocol(refs) -> None:
    assert len(refs) > 150
    for ref in refs:
        assert ref.source.strip() and ref.protocol.strip(), ref
        official = ("arXiv 2303.10438", "arXiv 2207.10447", "arXiv 2007.04178", "https://github.com/wpy1999/SAT",
                    "https://github.com/vasgaowei/TS-CAM", "https://github.com/164140757/SCM",
                    "https://github.com/clovaai/wsolevaluation")
        assert any(where in ref.source for where in official), ref


@pytest.mark.parametrize(("method", "backbone", "dataset", "metric", "value"), [
    ("sat", "deit_small_patch16_224", "cub", "top1_loc", 80.96),       # SAT paper, main table
    ("sat", "deit_small_patch16_224", "ilsvrc", "gt_known_loc", 73.13),
    ("ts_cam", "deit_small_patch16_224", "cub", "top1_cls", 80.3),     # TS-CAM README model zoo
    ("ts_cam", "deit_tiny_patch16_224", "cub", "gt_known_loc", 86.4),
    ("ts_cam", "deit_small_patch16_224", "ilsvrc", "top5_loc", 64.3),
    ("scm", "deit_small_patch16_224", "cub", "gt_known_loc", 96.6),    # SCM README
    ("scm", "deit_small_patch16_224", "ilsvrc", "top5_cls", 93.0),
    ("cam", "vgg16", "cub", "maxboxaccv2", 63.7),                       # wsolevaluation README
    ("cam", "inception_v3", "openimages", "pxap", 63.2),
    ("center", None, "ilsvrc", "maxboxaccv2", 52.5),
    ("acol", "resnet50", "cub", "maxboxaccv2", 66.5),                   # derived: CAM + README difference
    ("cam", "vgg16", "ilsvrc", "top1_loc", 42.80),                      # SAT paper, competitor rows
    ("isic", "resnet50", "cub", "gt_known_loc", 97.32),
])
def test_numbers_equal_the_cards(refs, method, backbone, dataset, metric, value) -> None:
    assert lookup(refs, method, dataset, backbone)[metric].value == value


def test_own_card_comes_first_and_variants_stay_out_of_lookup(refs) -> None:
    assert lookup(refs, "ts_cam", "cub", "deit_small_patch16_224")["top1_loc"].source.startswith("TS-CAM official")
    assert headline(refs, "sat").backbone == "deit_small_patch16_224"
    few_shot = [r.value for r in refs if r.variant.startswith("few_shot")]
    assert few_shot == [70.9, 71.9, 72.6, 72.9]
    assert lookup(refs, "gcnet", "ilsvrc", "inception_v3").get("gt_known_loc") is None  # "–" in the table


def test_malformed_file_names_the_row(tmp_path) -> None:
    path = tmp_path / "refs.yaml"
    path.write_text("groups:\n  - {source: s, protocol: p, columns: [cub.top1_loc],\n"
                    "     rows: [[sat, x, 1, 2]]}\n")
    with pytest.raises(ValueError, match=r"groups\[0\]\.rows\[0\]: expected 2 keys and 1 values"):
        load_references(path)
    path.write_text("groups:\n  - {source: s, columns: [cub.top1_loc], rows: [[sat, x, 1]]}\n")
    with pytest.raises(ValueError, match=r"groups\[0\]: missing or empty 'protocol'"):
        load_references(path)
    path.write_text("groups:\n  - {source: s, protocol: p, columns: [cub.top9], rows: [[sat, x, 1]]}\n")
    with pytest.raises(ValueError, match=r"'cub.top9' is not <dataset>.<metric>"):
        load_references(path)
