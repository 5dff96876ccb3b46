"""The shared metadata reader/writer, evaluation frames, mask label maps and per-class subsets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsolbench.annotations import (
    EvalFrame,
    MaskEntry,
    Metadata,
    MetadataError,
    mask_label_map,
    read_metadata,
    write_metadata,
)
from wsolbench.engine.regimes import per_class_subset

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "wsolevaluation" / "metadata"
MASKS = Path(__file__).resolve().parent / "data" / "openimages_masks"
FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")

GOOD = {
    "image_ids.txt": "a.jpg\nb.jpg",
    "class_labels.txt": "a.jpg,0\nb.jpg,2",
    "image_sizes.txt": "a.jpg,10,20\nb.jpg,30,40",
    "localization.txt": "a.jpg,0,0,9,19\nb.jpg,1,2,3,4\nb.jpg,5,6,29,39",
}


def _split(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "split"
    folder.mkdir(exist_ok=True)
    for name, text in {**GOOD, **{k.replace("_txt", ".txt"): v for k, v in files.items()}}.items():
        (folder / name).write_text(text)
    return folder


def test_reader_accepts_good_split(tmp_path: Path) -> None:
    meta = read_metadata(_split(tmp_path), num_classes=3)
    assert meta.image_ids == ["a.jpg", "b.jpg"] and meta.labels == {"a.jpg": 0, "b.jpg": 2}
    assert meta.sizes == {"a.jpg": (10, 20), "b.jpg": (30, 40)}
    assert meta.boxes == {"a.jpg": [(0, 0, 9, 19)], "b.jpg": [(1, 2, 3, 4), (5, 6, 29, 39)]}
    assert meta.kind == "boxes"


@pytest.mark.parametrize(
    ("files", "where", "message"),
    [
        (
            {"class_labels_txt": "a.jpg,0\nb.jpg,2,1"},
            "class_labels.txt:2",
            "expected 2 comma-separated fields",
        ),
        (
            {"localization_txt": "a.jpg,0,0,9\nb.jpg,1,2,3,4"},
            "localization.txt:1",
            "expected 5 comma-separated",
        ),
        (
            {"localization_txt": "a.jpg,0,0,9,19\nb.jpg,1,2,30,4"},
            "localization.txt:2",
            "lies outside the 30x40 image",
        ),
        ({"localization_txt": "a.jpg,0,0,9,20"}, "localization.txt:1", "lies outside the 10x20 image"),
        ({"localization_txt": "a.jpg,0,0,9,19\nb.jpg,4,2,3,4"}, "localization.txt:2", "x1 < x0 or y1 < y0"),
        ({"localization_txt": "a.jpg,0,-1,9,19"}, "localization.txt:1", "negative coordinate"),
        ({"class_labels_txt": "a.jpg,0\nc.jpg,1\nb.jpg,2"}, "class_labels.txt:2", "unknown image 'c.jpg'"),
        ({"image_sizes_txt": "a.jpg,10,20\n\nz.jpg,3,3"}, "image_sizes.txt:3", "unknown image 'z.jpg'"),
        ({"class_labels_txt": "a.jpg,0\nb.jpg,3"}, "class_labels.txt:2", "class id 3 out of range [0, 3)"),
        ({"class_labels_txt": "a.jpg,-1\nb.jpg,2"}, "class_labels.txt:1", "class id -1 out of range"),
        ({"class_labels_txt": "a.jpg,0\nb.jpg,two"}, "class_labels.txt:2", "class label must be an integer"),
        ({"localization_txt": "a.jpg,0,0,9.5,19"}, "localization.txt:1", "x1 must be an integer"),
        ({"image_sizes_txt": "a.jpg,10,20\nb.jpg,0,40"}, "image_sizes.txt:2", "image size must be positive"),
        ({"image_ids_txt": "a.jpg\nb.jpg\na.jpg"}, "image_ids.txt:3", "duplicate image id 'a.jpg'"),
        ({"image_ids_txt": "a.jpg\nb,jpg"}, "image_ids.txt:2", "one image id per line"),
        ({"class_labels_txt": "a.jpg,0\nb.jpg,2\na.jpg,1"}, "class_labels.txt:3", "second label for 'a.jpg'"),
        ({"class_labels_txt": "b.jpg,2"}, "image_ids.txt:1", "no label for 1 image(s), first 'a.jpg'"),
        ({"image_sizes_txt": "a.jpg,10,20"}, "localization.txt:2", "which has no line in image_sizes.txt"),
        ({"localization_txt": "a.jpg,m.png,"}, "localization.txt:1", "must carry its ignore-mask path"),
        (
            {"localization_txt": "a.jpg,m.png,i.png\na.jpg,n.png,j.png"},
            "localization.txt:2",
            "only the first line",
        ),
        (
            {"localization_txt": "a.jpg,m.png,i.png\nb.jpg,,i.png"},
            "localization.txt:2",
            "empty instance-mask path",
        ),
        (
            {"localization_txt": "a.jpg,m.png,i.png\nb.jpg,n.png"},
            "localization.txt:2",
            "expected 3 comma-separated",
        ),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path: Path, files: dict, where: str, message: str) -> None:
    folder = _split(tmp_path, **files)
    with pytest.raises(MetadataError) as info:
        read_metadata(folder, num_classes=3)
    text = str(info.value)
    assert f"{folder / where}" in text
    assert message in text


def test_reader_missing_file(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    (folder / "class_labels.txt").unlink()
    with pytest.raises(MetadataError, match=re.escape(f"{folder / 'class_labels.txt'}: missing")):
        read_metadata(folder)


def test_round_trip_exact_bytes(tmp_path: Path) -> None:
    folder = _split(tmp_path)
    write_metadata(tmp_path / "out", read_metadata(folder))
    for name in FILES:
        written = (tmp_path / "out" / name).read_bytes()
        assert written == (folder / name).read_bytes() and not written.endswith(b"\n")


@pytest.mark.parametrize(
    "split", ["CUB/train", "CUB/val", "CUB/test", "ILSVRC/val", "OpenImages/val", "OpenImages/test"]
)
def test_round_trip_shipped_metadata(tmp_path: Path, split: str) -> None:
    metadata = read_metadata(SHIPPED / split)
    write_metadata(tmp_path, metadata)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (SHIPPED / split / name).read_bytes(), name
    assert metadata.kind == ("masks" if split.startswith("OpenImages") else "boxes")


def test_shipped_counts() -> None:
    """docs/datasets.md: split sizes and box / mask entry counts of the shipped metadata."""
    cub_val = read_metadata(SHIPPED / "CUB" / "val", 200)
    ilsvrc_val = read_metadata(SHIPPED / "ILSVRC" / "val", 1000)
    oi_test = read_metadata(SHIPPED / "OpenImages" / "test", 100)
    assert len(cub_val) == 1000 and sum(map(len, cub_val.boxes.values())) == 1000
    assert len(ilsvrc_val) == 10000 and sum(map(len, ilsvrc_val.boxes.values())) == 18532
    assert len(oi_test) == 5000 and sum(len(e.instances) for e in oi_test.masks.values()) == 7632


def test_frame_box_wsolevaluation_examples() -> None:
    # docs/metrics.md case C4: the CUB test image Black_Footed_Albatross_0046_18 (500x335).
    assert EvalFrame(224, 224).box((60, 27, 385, 331), 500, 335) == (26, 18, 172, 221)


def test_frame_box_sat_crop() -> None:
    # docs/protocols.md, R = 256, C = 224, s = 16: x' = int(max(x·R/W − s, 0)), ends int(min(x·R/W − s, C − 1)).
    frame = EvalFrame(resize=256, crop=224)
    assert frame.offset == 16
    # 60·0.512 − 16 = 14.72; 27·256/335 − 16 = 4.63; 385·0.512 − 16 = 181.12; 331·256/335 − 16 = 236.9 → 223
    assert frame.box((60, 27, 385, 331), 500, 335) == (14, 4, 181, 223)
    # 5·0.512 − 16 < 0 and 3·256/335 − 16 < 0 → 0; 100·0.512 − 16 = 35.2; 50·256/335 − 16 = 22.2
    assert frame.box((5, 3, 100, 50), 500, 335) == (0, 0, 35, 22)


def _nearest(path: Path, size: int, offset: int, crop: int) -> np.ndarray:
    array = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    rows = np.floor(np.arange(size) * array.shape[0] / size).astype(int)
    cols = np.floor(np.arange(size) * array.shape[1] / size).astype(int)
    return array[rows][:, cols][offset : offset + crop, offset : offset + crop] > 0.5


@pytest.mark.parametrize(("resize", "crop"), [(64, 64), (73, 64)])
def test_mask_label_map(resize: int, crop: int) -> None:
    frame = EvalFrame(resize, crop)
    entry = MaskEntry(
        ("val/0bt_c3/3b3b9931325d65c9_m0bt_c3_d4e2e136.png",), "val/0bt_c3/3b3b9931325d65c9_ignore.png"
    )
    foreground = _nearest(MASKS / entry.instances[0], resize, frame.offset, crop)
    ignore = _nearest(MASKS / entry.ignore, resize, frame.offset, crop)
    assert np.array_equal(frame.mask(MASKS / entry.instances[0]), foreground)
    labels = mask_label_map(entry, MASKS, frame)
    assert labels.shape == (crop, crop) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 255}
    assert np.array_equal(labels == 1, foreground)
    assert np.array_equal(labels == 255, ignore & ~foreground)  # ignore = I \ F
    assert (ignore & foreground).any()  # the case where the set difference matters is exercised


def test_mask_label_map_union_of_instances() -> None:
    frame = EvalFrame(64, 64)
    folder = "val/0bt_c3/3a29f0b33894d4a6"
    entry = MaskEntry(
        (f"{folder}_m0bt_c3_d2422806.png", f"{folder}_m0bt_c3_3581e3ae.png"), f"{folder}_ignore.png"
    )
    labels = mask_label_map(entry, MASKS, frame)
    union = frame.mask(MASKS / entry.instances[0]) | frame.mask(MASKS / entry.instances[1])
    assert np.array_equal(labels == 1, union) and not (labels == 255).any()


def _toy(counts: dict[int, int]) -> Metadata:
    ids = [f"{c}_{k}.jpg" for c, n in counts.items() for k in range(n)]
    return Metadata(ids, {i: int(i.split("_")[0]) for i in ids})


def test_per_class_subset_seeded() -> None:
    meta = _toy({0: 6, 1: 7, 2: 5})
    a, b, c = per_class_subset(meta, 3, 0), per_class_subset(meta, 3, 0), per_class_subset(meta, 3, 1)
    assert a.image_ids == b.image_ids and a.image_ids != c.image_ids
    assert [sum(a.labels[i] == k for i in a.image_ids) for k in range(3)] == [3, 3, 3]
    assert a.image_ids == [i for i in meta.image_ids if i in set(a.image_ids)]  # metadata order kept
    with pytest.raises(ValueError, match="class 2 has 5 image"):
        per_class_subset(meta, 6, 0)


def test_per_class_subset_cub_val() -> None:
    cub_val = read_metadata(SHIPPED / "CUB" / "val", 200)
    with pytest.raises(ValueError, match=r"class 58 has 3 image\(s\), fewer than the 5"):
        per_class_subset(cub_val, 5, 0)
    assert len(per_class_subset(cub_val, 3, 0)) == 600
