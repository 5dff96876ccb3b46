"""Dataset adapters: the synthetic generator and miniature versions of every official layout."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from wsolbench.datasets import synthetic
from wsolbench.datasets.ilsvrc import ILSVRCAdapter
from wsolbench.datasets.openimages import OpenImagesAdapter

from wsolbench.annotations import ImageError, read_metadata, write_metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import open_dataset
from wsolbench.registry import DATASETS

# --------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("syn") / "synthetic"
    DATASETS.get("synthetic").prepare(None, dest)
    return dest


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_registered_adapters_contract() -> None:
    expected = {
        "synthetic": 10,
        "cub": 200,
        "ilsvrc": 1000,
        "openimages": 100,
        "stanford_dogs": 120,
        "aircraft": 100,
        "cars": 196,
    }
    assert expected.keys() <= set(DATASETS.names())
    for name, num_classes in expected.items():
        adapter = DATASETS.get(name)
        assert (
            isinstance(adapter, DatasetAdapter)
            and adapter.name == name
            and adapter.num_classes == num_classes
        )
        assert adapter.description and adapter.source_hint and adapter.needs_source == (name != "synthetic")


def test_synthetic_registered_contract() -> None:
    adapter = DATASETS.get("synthetic")
    assert adapter.name == "synthetic" and adapter.needs_source is False
    assert adapter.num_classes == 10 and len(synthetic.CLASSES) == 10


def test_synthetic_layout_and_sizes(synthetic_root: Path) -> None:
    dataset = open_dataset(synthetic_root)
    info = yaml.safe_load((synthetic_root / "dataset.yaml").read_text())
    assert info["version"] == synthetic.VERSION and info["seed"] == 0 and info["image_root"] == "images"
    assert dataset.num_classes == 10 and dataset.image_root == synthetic_root / "images"
    counts = {split: len(dataset.split(split)) for split in ("train", "val", "test")}
    assert counts == {"train": 1000, "val": 100, "test": 400}
    test = dataset.split("test")
    assert test.image_ids[0] == "test/00_ellipse_stripes/test_0000.png"
    assert sorted(set(test.labels.values())) == list(range(10))
    multi = sum(len(test.boxes[i]) == 2 for i in test.image_ids)
    assert 40 <= multi <= 160  # about a quarter of the images hold two instances
    with Image.open(dataset.image_root / test.image_ids[0]) as image:
        assert image.size == (64, 64) and image.mode == "RGB"


def test_synthetic_deterministic_bytes(synthetic_root: Path, tmp_path: Path) -> None:
    stale = tmp_path / "synthetic"
    stale.mkdir()
    (stale / "dataset.yaml").write_text(
        "name: synthetic\nversion: '0'\nnum_classes: 10\nimage_root: images\nseed: 0\n"
    )
    (stale / "leftover.txt").write_text("from version 0")
    with pytest.warns(UserWarning, match="synthetic version 0 seed 0 replaced by version 2 seed 0"):
        again = synthetic.SyntheticAdapter(seed=0).prepare(None, stale).root
    first, second = _tree(synthetic_root), _tree(again)
    assert first.keys() == second.keys() and len(first) == 1500 + 13
    assert all(first[k] == second[k] for k in first)
    other = synthetic.render(1, "test", 0).image
    assert not np.array_equal(other, synthetic.render(0, "test", 0).image)


def test_synthetic_boxes_match_masks_and_pixels(synthetic_root: Path) -> None:
    test = read_metadata(synthetic_root / "metadata" / "test", 10)
    for index in range(0, 400, 7):
        name = test.image_ids[index]
        sample = synthetic.render(0, "test", index)
        assert test.labels[name] == index // 40
        assert test.boxes[name] == sample.boxes
        with Image.open(synthetic_root / "images" / name) as image:
            assert np.array_equal(np.asarray(image), sample.image)
        union = np.zeros((64, 64), dtype=int)
        for mask, (x0, y0, x1, y1) in zip(sample.masks, sample.boxes, strict=True):
            rows, cols = np.nonzero(mask)
            assert (cols.min(), rows.min(), cols.max(), rows.max()) == (x0, y0, x1, y1)
            # The class cue (texture in the class's colour) lies inside the object, on part of it only.
            colour = synthetic.CUE_COLORS[index // 40]
            cue = np.all(np.abs(sample.image.astype(int) - colour) < 30, axis=-1) & mask
            assert 0 < cue.sum() < 0.5 * mask.sum()
            union += mask
        assert union.max() == 1  # instances never overlap


def test_synthetic_reuse_and_refuse(synthetic_root: Path, tmp_path: Path) -> None:
    marker = synthetic_root / "images" / "test" / "00_ellipse_stripes" / "test_0000.png"
    stamp = marker.stat().st_mtime_ns
    assert DATASETS.get("synthetic").prepare(None, synthetic_root).root == synthetic_root
    assert marker.stat().st_mtime_ns == stamp  # same version and seed: reused, not rewritten
    foreign = tmp_path / "synthetic"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no dataset.yaml"):
        synthetic.SyntheticAdapter().prepare(None, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- miniature official layouts

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "wsolevaluation" / "metadata"


def _jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 60)).save(path, format="JPEG")


def _tiny_jpeg(path: Path) -> None:
    """A valid 4x4 JPEG (prepare decodes every image; sizes and boxes come from shipped metadata)."""
    if not TINY_JPEG:
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), (90, 120, 60)).save(buffer, format="JPEG")
        TINY_JPEG.append(buffer.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(TINY_JPEG[0])


TINY_JPEG: list[bytes] = []


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def _split_files(root: Path, split: str) -> dict[str, str]:
    folder = root / "metadata" / split
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


ALBATROSS = "001.Black_footed_Albatross/Black_Footed_Albatross_"
LAYSAN = "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg"


@pytest.fixture()
def cub_source(tmp_path: Path) -> Path:
    root = tmp_path / "CUB_200_2011"
    _jpeg(root / "images" / f"{ALBATROSS}0046_18.jpg", 500, 335)  # W x H from the shipped image_sizes.txt
    _jpeg(root / "images" / f"{ALBATROSS}0009_34.jpg", 500, 336)
    _jpeg(root / "images" / LAYSAN, 40, 30)
    _write(root / "images.txt", f"1 {ALBATROSS}0046_18.jpg\n2 {ALBATROSS}0009_34.jpg\n3 {LAYSAN}\n")
    _write(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n")
    _write(root / "train_test_split.txt", "1 0\n2 1\n3 0\n")
    _write(
        root / "bounding_boxes.txt",
        "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 5.0 6.0 35.0 24.0\n",
    )
    return root


def test_cub_miniature(cub_source: Path, tmp_path: Path) -> None:
    shipped_train = (SHIPPED / "CUB" / "train" / "image_sizes.txt").read_text()
    assert f"{ALBATROSS}0009_34.jpg,500,336" in shipped_train.split("\n")
    with pytest.warns(UserWarning, match="CUBV2"):
        prepared = DATASETS.get("cub").prepare(cub_source, tmp_path / "cub")
    assert not prepared.has_split("val") and prepared.image_root == cub_source / "images"
    test = _split_files(prepared.root, "test")
    # Examples: img 1 "60.0 27.0 325.0 304.0" at 500x335 → 60,27,385,331 (the shipped line);
    # img 3 ends at x + w = W and y + h = H and is clipped to the last pixel.
    assert test["localization.txt"] == f"{ALBATROSS}0046_18.jpg,60,27,385,331\n{LAYSAN},5,6,39,29"
    assert (
        test["localization.txt"].split("\n")[0] in (SHIPPED / "CUB" / "test" / "localization.txt").read_text()
    )
    assert test["class_labels.txt"] == f"{ALBATROSS}0046_18.jpg,0\n{LAYSAN},1"
    assert test["image_sizes.txt"] == f"{ALBATROSS}0046_18.jpg,500,335\n{LAYSAN},40,30"
    assert test["image_ids.txt"] == f"{ALBATROSS}0046_18.jpg\n{LAYSAN}"
    train = _split_files(prepared.root, "train")
    assert train["localization.txt"] == f"{ALBATROSS}0009_34.jpg,139,30,292,294"
    assert train["class_labels.txt"] == f"{ALBATROSS}0009_34.jpg,0"


def test_prepared_dataset_honours_the_umask(cub_source: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with pytest.warns(UserWarning, match="CUBV2"):
            prepared = DATASETS.get("cub").prepare(cub_source, tmp_path / "data" / "cub")
    finally:
        os.umask(previous)
    folders = [prepared.root, *(p for p in prepared.root.rglob("*") if p.is_dir())]
    files = [p for p in prepared.root.rglob("*") if p.is_file()]
    assert len(folders) == 4 and len(files) == 9  # metadata/{train,test}: 4 files each, and dataset.yaml
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o755)}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}


def test_cub_with_cubv2(cub_source: Path, tmp_path: Path) -> None:
    val_ids = (SHIPPED / "CUB" / "val" / "image_ids.txt").read_text().split("\n")
    for image_id in val_ids:
        _tiny_jpeg(cub_source / "images" / image_id)
    prepared = DATASETS.get("cub").prepare(cub_source, tmp_path / "cub")
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        assert (prepared.metadata_dir("val") / name).read_bytes() == (
            SHIPPED / "CUB" / "val" / name
        ).read_bytes()
    (cub_source / "images" / val_ids[3]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 of 1000 CUBV2 val images missing, first: {val_ids[3]}"):
        DATASETS.get("cub").prepare(cub_source, tmp_path / "cub2")
    assert not (tmp_path / "cub2").exists()


def test_cub_source_errors(cub_source: Path, tmp_path: Path) -> None:
    _write(cub_source / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0\n3 5 6 35 24\n")
    with pytest.raises(ValueError, match=r"bounding_boxes.txt:2: expected <img_id> and 4 field"):
        DATASETS.get("cub").prepare(cub_source, tmp_path / "cub")
    _write(
        cub_source / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 45 6 5 5\n"
    )
    with pytest.raises(ValueError, match=r"bounding_boxes.txt:3: box \(45,6,39,11\)"):
        DATASETS.get("cub").prepare(cub_source, tmp_path / "cub")
    (cub_source / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_test_split.txt: missing; expected source layout"):
        DATASETS.get("cub").prepare(cub_source, tmp_path / "cub")
    assert not (tmp_path / "cub").exists()  # a failed prepare leaves nothing behind


def _ilsvrc_source(root: Path) -> Path:
    _jpeg(root / "train" / "n01440764" / "n01440764_10026.JPEG", 20, 20)
    _jpeg(root / "train" / "n01443537" / "n01443537_10007.JPEG", 20, 20)
    _jpeg(root / "train" / "n01443537" / "n01443537_1.JPEG", 20, 20)
    _jpeg(root / "val" / "ILSVRC2012_val_00000001.JPEG", 50, 40)
    _jpeg(root / "val" / "ILSVRC2012_val_00000002.JPEG", 30, 30)
    return root


def _xml(wnid_boxes: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objects = "".join(
        f"<object><name>{w}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>"
        for w, (a, b, c, d) in wnid_boxes
    )
    return f"<annotation><folder>val</folder>{objects}</annotation>"


ILSVRC_TEST = {
    "image_ids.txt": "val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG",
    "class_labels.txt": "val/ILSVRC2012_val_00000001.JPEG,1\nval/ILSVRC2012_val_00000002.JPEG,0",
    "image_sizes.txt": "val/ILSVRC2012_val_00000001.JPEG,50,40\nval/ILSVRC2012_val_00000002.JPEG,30,30",
    # (5,5,50,40) ends one past the last pixel of the 50x40 image: clipped to (5,5,49,39).
    "localization.txt": "val/ILSVRC2012_val_00000001.JPEG,1,2,10,20\n"
    "val/ILSVRC2012_val_00000001.JPEG,5,5,49,39\n"
    "val/ILSVRC2012_val_00000002.JPEG,0,0,29,29",
}


def test_ilsvrc_xml_and_csv(tmp_path: Path) -> None:
    source = _ilsvrc_source(tmp_path / "xml" / "ILSVRC")
    _write(
        source / "val" / "ILSVRC2012_val_00000001.xml",
        _xml([("n01443537", (1, 2, 10, 20)), ("n01443537", (5, 5, 50, 40))]),
    )
    _write(source / "val" / "ILSVRC2012_val_00000002.xml", _xml([("n01440764", (0, 0, 29, 29))]))
    with pytest.warns(UserWarning, match="val2"):
        from_xml = DATASETS.get("ilsvrc").prepare(source, tmp_path / "out_xml")
    assert _split_files(from_xml.root, "test") == ILSVRC_TEST
    train = _split_files(from_xml.root, "train")
    assert train["class_labels.txt"] == (
        "train/n01440764/n01440764_10026.JPEG,0\ntrain/n01443537/n01443537_1.JPEG,1\n"
        "train/n01443537/n01443537_10007.JPEG,1"
    )
    assert train["localization.txt"] == "" and train["image_sizes.txt"] == ""

    source = _ilsvrc_source(tmp_path / "csv" / "ILSVRC")
    _write(
        source / "LOC_val_solution.csv",
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 0 0 29 29 \r\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 10 20 n01443537 5 5 50 40 \n",
    )
    with pytest.warns(UserWarning, match="val2"):
        from_csv = DATASETS.get("ilsvrc").prepare(source, tmp_path / "out_csv")
    assert _split_files(from_csv.root, "test") == ILSVRC_TEST

    _write(
        source / "LOC_val_solution.csv",
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 30 0 35 29\n",
    )
    with pytest.raises(ValueError, match=r"annotations and val images disagree: 1 image\(s\) without boxes"):
        DATASETS.get("ilsvrc").prepare(source, tmp_path / "bad")
    _write(
        source / "LOC_val_solution.csv",
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 30 0 35 29\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\n",
    )
    with pytest.raises(
        ValueError, match=r"LOC_val_solution.csv:2: box \(30, 0, 35, 29\) does not lie in the 30x30"
    ):
        DATASETS.get("ilsvrc").prepare(source, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_ilsvrc_imagenetv2_val(tmp_path: Path) -> None:
    source = _ilsvrc_source(tmp_path / "ILSVRC")
    _write(source / "val" / "ILSVRC2012_val_00000001.xml", _xml([("n01443537", (1, 2, 10, 20))]))
    _write(source / "val" / "ILSVRC2012_val_00000002.xml", _xml([("n01440764", (0, 0, 29, 29))]))
    (source / "val2").mkdir()
    with pytest.raises(ValueError, match="1000 ILSVRC classes, but train/ has 2 class folders"):
        DATASETS.get("ilsvrc").prepare(source, tmp_path / "out")
    for k in range(998):
        (source / "train" / f"n9{k:07d}").mkdir()
    shipped = read_metadata(SHIPPED / "ILSVRC" / "val", 1000)
    mini = shipped.subset(shipped.image_ids[:15])  # labels 0 and 1, one image with several boxes
    assert sum(map(len, mini.boxes.values())) > 15
    write_metadata(tmp_path / "val_meta", mini)
    for image_id in mini.image_ids:
        _tiny_jpeg(source / image_id)
    prepared = ILSVRCAdapter(tmp_path / "val_meta").prepare(source, tmp_path / "out")
    assert prepared.num_classes == 1000
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        assert (prepared.metadata_dir("val") / name).read_bytes() == (
            tmp_path / "val_meta" / name
        ).read_bytes()
    assert (
        (prepared.metadata_dir("val") / "localization.txt")
        .read_text()
        .startswith("val2/0/0.jpeg,156,163,318,230")
    )
    (source / mini.image_ids[-1]).unlink()
    with pytest.raises(
        FileNotFoundError, match=f"1 of 15 ImageNetV2 val images missing, first: {mini.image_ids[-1]}"
    ):
        ILSVRCAdapter(tmp_path / "val_meta").prepare(source, tmp_path / "out2")


def test_openimages_miniature(tmp_path: Path) -> None:
    metadata_dir = tmp_path / "meta"
    source = tmp_path / "OpenImages"
    for split in ("train", "val", "test"):
        shipped = read_metadata(SHIPPED / "OpenImages" / split, 100)
        mini = shipped.subset(shipped.image_ids[:3])
        write_metadata(metadata_dir / split, mini)
        for image_id in mini.image_ids:
            _tiny_jpeg(source / image_id)
            for entry in [mini.masks[image_id]] if image_id in mini.masks else []:
                for mask in (*entry.instances, entry.ignore):
                    _tiny_jpeg(source / mask)  # any decodable image
    prepared = OpenImagesAdapter(metadata_dir).prepare(source, tmp_path / "openimages")
    assert prepared.image_root == source and prepared.mask_root == source
    for split in ("train", "val", "test"):
        for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
            assert (prepared.metadata_dir(split) / name).read_bytes() == (
                metadata_dir / split / name
            ).read_bytes()
    val = prepared.split("val")
    first = val.masks[val.image_ids[0]].instances[0]
    (source / first).unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 of \d+ OpenImages val masks missing, first: {first}"):
        OpenImagesAdapter(metadata_dir).prepare(source, tmp_path / "openimages")
    assert (tmp_path / "openimages" / "dataset.yaml").is_file()  # the earlier prepared dataset is untouched
    (source / first).write_bytes(b"")  # present but empty: every mask is decoded at prepare time too
    with pytest.raises(ImageError, match=rf"1 of \d+ images cannot be decoded(.|\n)*{first}: empty file"):
        OpenImagesAdapter(metadata_dir).prepare(source, tmp_path / "openimages")


def test_stanford_dogs_miniature(tmp_path: Path) -> None:
    root = tmp_path / "Stanford_Dogs"
    for split in ("train", "test"):
        _jpeg(root / split / "n02085620-Chihuahua" / f"{split}_1.jpg", 40, 30)
        _jpeg(root / split / "n02085782-Japanese_spaniel" / f"{split}_2.jpg", 20, 10)
    _write(
        root / "test_list.txt",
        "n02085782-Japanese_spaniel/test_2.jpg;1\r\nn02085620-Chihuahua/test_1.jpg;0\r\n",
    )
    _write(root / "test_gt.txt", "0 0 20 10 10 20\r\n1 2 30 20 5 5 40 30 30 40\r\n")
    prepared = DATASETS.get("stanford_dogs").prepare(root, tmp_path / "dogs")
    test = _split_files(prepared.root, "test")
    assert test["localization.txt"] == (
        "test/n02085782-Japanese_spaniel/test_2.jpg,0,0,19,9\n"
        "test/n02085620-Chihuahua/test_1.jpg,1,2,30,20\ntest/n02085620-Chihuahua/test_1.jpg,5,5,39,29"
    )
    assert (
        test["class_labels.txt"]
        == "test/n02085782-Japanese_spaniel/test_2.jpg,1\ntest/n02085620-Chihuahua/test_1.jpg,0"
    )
    assert _split_files(prepared.root, "train")["class_labels.txt"] == (
        "train/n02085620-Chihuahua/train_1.jpg,0\ntrain/n02085782-Japanese_spaniel/train_2.jpg,1"
    )
    _write(root / "test_gt.txt", "0 0 20 10 20 10\r\n1 2 30 20 30 40\r\n")  # W and H swapped on line 1
    with pytest.raises(ValueError, match=r"test_gt.txt:1: lists H W = 20 10 but"):
        DATASETS.get("stanford_dogs").prepare(root, tmp_path / "dogs2")


@pytest.mark.parametrize(
    ("name", "codes", "expected"),
    [
        ("aircraft", ("0", "2", "1"), ("train", "train", "test")),
        ("cars", ("0", "0", "1"), ("train", "train", "test")),
    ],
)
def test_images_box_miniature(
    tmp_path: Path, name: str, codes: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    adapter = DATASETS.get(name)
    root = tmp_path / "src"
    classes = [f"Class {k}/{k}" for k in range(adapter.num_classes)]
    _write(root / "classes.txt", "\r\n".join(classes) + "\r\n")  # CRLF, as some SAT list files
    ids = ("0034309", "0034958", "1000001")
    for image in ids:
        _jpeg(root / "images" / f"{image}.jpg", 40, 30)
    _write(
        root / "images_box.txt",
        f"{ids[0]};Class 3/3;{codes[0]};1 2 40 30 30 40\r\n"
        f"{ids[1]};Class 0/0;{codes[1]};0 0 10 10 30 40\r\n"
        f"{ids[2]};Class 2/2;{codes[2]};3 4 20 25 30 40\r\n",
    )
    prepared = adapter.prepare(root, tmp_path / name)
    assert prepared.num_classes == adapter.num_classes
    train, test = _split_files(prepared.root, "train"), _split_files(prepared.root, "test")
    assert expected == ("train", "train", "test")
    assert train["localization.txt"] == f"images/{ids[0]}.jpg,1,2,39,29\nimages/{ids[1]}.jpg,0,0,10,10"
    assert train["class_labels.txt"] == f"images/{ids[0]}.jpg,3\nimages/{ids[1]}.jpg,0"
    assert test["localization.txt"] == f"images/{ids[2]}.jpg,3,4,20,25"
    assert test["image_sizes.txt"] == f"images/{ids[2]}.jpg,40,30"
    _write(root / "images_box.txt", f"{ids[0]};Class 3/3;7;1 2 40 30 30 40\r\n")
    with pytest.raises(ValueError, match=r"images_box.txt:1: expected '<id>;<class name>;<split code"):
        adapter.prepare(root, tmp_path / "bad")
