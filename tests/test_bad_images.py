"""Corrupt image files: named, with what is wrong, at prepare time and at train / evaluation time."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from engine_toy import TOY, make_dataset, overrides
from PIL import Image, ImageFile

from wsolbench.annotations import ImageError, load_image
from wsolbench.engine.runner import execute, plan_runs
from wsolbench.registry import DATASETS, METHODS

ALBATROSS = "001.Black_footed_Albatross/Black_Footed_Albatross_"


def _jpeg_bytes(width: int = 120, height: int = 80, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _corrupt(kind: str) -> bytes:
    data = _jpeg_bytes()
    return {
        "random": np.random.default_rng(1).bytes(len(data)),
        "cut400": data[:400],
        "cut60": data[: int(0.6 * len(data))],
        "empty": b"",
    }[kind]


EXPECTED = {
    "random": r"not a readable image \(\d+ bytes that PIL cannot identify",
    "cut400": r"truncated image data \(400 bytes",
    "cut60": r"truncated image data \(\d+ bytes; image file is truncated",
    "empty": r"empty file \(0 bytes\)",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_load_image_names_the_file_and_what_is_wrong(tmp_path, kind) -> None:
    path = tmp_path / "bird.jpg"
    path.write_bytes(_corrupt(kind))
    with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}: {EXPECTED[kind]}"):
        load_image(path)


def test_truncated_images_are_never_accepted_globally() -> None:
    METHODS.load_plugins()
    DATASETS.load_plugins()
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _cub_source(root: Path, bad: dict[str, str]) -> Path:
    """A 6-image CUB layout; `bad` maps image file names to a corruption kind."""
    names = [f"{ALBATROSS}{k:04d}.jpg" for k in range(6)]
    for k, name in enumerate(names):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_corrupt(bad[name]) if name in bad else _jpeg_bytes(seed=k))
    (root / "images.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(names)))
    (root / "image_class_labels.txt").write_text("".join(f"{k + 1} 1\n" for k in range(6)))
    (root / "train_test_split.txt").write_text("".join(f"{k + 1} {k % 2}\n" for k in range(6)))
    (root / "bounding_boxes.txt").write_text("".join(f"{k + 1} 5 5 20 20\n" for k in range(6)))
    return root


def _prepare_fails(tmp_path: Path, bad: dict[str, str]) -> str:
    source = _cub_source(tmp_path / "CUB_200_2011", bad)
    with pytest.raises(ImageError) as raised:
        DATASETS.get("cub").prepare(source, tmp_path / "data" / "cub")
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []  # no staging left
    return str(raised.value)


@pytest.mark.filterwarnings("ignore:.*CUBV2")
def test_prepare_names_every_unreadable_image_and_writes_nothing(tmp_path) -> None:
    names = [f"{ALBATROSS}{k:04d}.jpg" for k in range(6)]
    message = _prepare_fails(tmp_path, {names[1]: "random", names[2]: "cut400", names[4]: "empty"})
    assert message.startswith("3 of 6 images cannot be read")
    lines = message.splitlines()[1:]
    for line, name, kind in zip(lines, [names[1], names[2], names[4]], ["random", "cut400", "empty"], strict=True):
        assert re.match(rf"  .*{re.escape(name)}: {EXPECTED[kind]}", line), line


@pytest.mark.filterwarnings("ignore:.*CUBV2")
def test_prepare_decodes_every_image_fully(tmp_path) -> None:
    names = [f"{ALBATROSS}{k:04d}.jpg" for k in range(6)]
    message = _prepare_fails(tmp_path, {names[0]: "cut60", names[5]: "cut60"})  # headers read fine
    assert message.startswith("2 of 6 images cannot be decoded")
    assert all(re.search(EXPECTED["cut60"], line) for line in message.splitlines()[1:])
    assert [name in message for name in names] == [True, False, False, False, False, True]


@pytest.mark.parametrize("split, workers", [("test", 0), ("test", 1), ("train", 0)])
def test_an_image_corrupted_after_prepare_fails_the_run_naming_file_and_split(tmp_path, split, workers) -> None:
    prepared = make_dataset(tmp_path / "data" / "synthetic")
    image_id = prepared.split(split).image_ids[1]
    (prepared.image_root / image_id).write_bytes(_corrupt("cut60"))
    configs = plan_runs([TOY], ["synthetic"], overrides=overrides(
        tmp_path / "data", tmp_path / "runs", **{"dataset.num_workers": workers, "train.epochs": 1}))
    with pytest.raises(ImageError) as raised:
        execute(configs)
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message  # one line, also from a DataLoader worker
    assert message.startswith(f"{prepared.image_root / image_id}: truncated image data")
    assert f"(image {image_id!r} of split {split};" in message
    run = tmp_path / "runs" / "toy" / "synthetic" / f"{TOY}-full-seed0"
    assert not (run / "metrics.json").exists() and not (run / ".lock").exists()

