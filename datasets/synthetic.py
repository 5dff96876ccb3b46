"""`synthetic`: the built-in, generated WSOL dataset (no download; the default for runs and tests).

Ten classes = five silhouettes (ellipse, rectangle, triangle, diamond, cross) x two cue textures
(stripes, checks). The silhouette spans the whole object, but the class cue (the texture, drawn in a
colour of the class's own against a dark one) covers only one end of it (45% of its extent, on a
random side), while the rest of the body is a random plain colour: a classifier can succeed by looking
at the cue alone, which is the partial-activation failure WSOL methods are meant to fix. Bodies and
distractors are muted (halfway to grey), so the saturated cue colour alone names the class, which
makes the task learnable by tiny models trained from scratch in a few epochs. Objects vary in scale,
aspect, position and orientation; a quarter of the images hold two instances of the class (two GT
boxes); backgrounds are noisy gradients with plain and dotted distractor blobs.

Guarantees:
- Every image is rendered from numpy's Generator seeded with (seed, split, index) only, and written
  as a 64x64 RGB PNG by PIL with fixed parameters, so the same VERSION and seed give identical bytes
  in every file (metadata and dataset.yaml included). VERSION changes whenever the output would.
- GT boxes are the exact inclusive bounding boxes of the instance masks; instances never overlap.
- `prepare` reuses a destination that already holds this VERSION and seed; a synthetic dataset of
  another version or seed is regenerated in place (with a warning); any other non-empty folder is
  an error, so user data is never overwritten.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsolbench.annotations import Metadata, write_metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import PreparedDataset, open_dataset, write_dataset_info
from wsolbench.registry import register_dataset

from ._build import staged

VERSION = "2"
SIZE = 64
SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "cross")
CUES = ("stripes", "checks")
CLASSES = tuple(
    f"{s * len(CUES) + c:02d}_{shape}_{cue}" for s, shape in enumerate(SHAPES) for c, cue in enumerate(CUES)
)
PER_CLASS = {"train": 100, "val": 10, "test": 40}
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# The bright cue colour of each class (hues 36 degrees apart), drawn against CUE_DARK.
CUE_COLORS = tuple(
    np.array(colour, dtype=np.float64)
    for colour in ((240, 40, 40), (240, 150, 30), (230, 230, 40), (120, 240, 40), (40, 240, 110),
                   (40, 230, 230), (40, 120, 240), (110, 40, 240), (230, 40, 230), (240, 40, 130))
)
CUE_DARK = np.array([25.0, 25.0, 25.0])
CUE_FRACTION = 0.45
TWO_INSTANCE_PROBABILITY = 0.25


@dataclass
class Sample:
    """One rendered image: (64, 64, 3) uint8 pixels, boolean instance masks and their boxes."""

    image: np.ndarray
    masks: list[np.ndarray]
    boxes: list[tuple[int, int, int, int]]


def image_id(split: str, index: int, label: int) -> str:
    return f"{split}/{CLASSES[label]}/{split}_{index:04d}.png"


def label_of(split: str, index: int) -> int:
    return index // PER_CLASS[split]


def _silhouette(shape: str, w: int, h: int, orientation: int) -> np.ndarray:
    """Boolean (h, w) mask of `shape` filling a w x h box, sampled at pixel centres."""
    u = (np.arange(w) + 0.5) / w * 2 - 1
    v = (np.arange(h) + 0.5) / h * 2 - 1
    u, v = np.meshgrid(u, v)
    if orientation & 1:
        u, v = v, u
    if orientation & 2:
        v = -v
    if shape == "ellipse":
        return u**2 + v**2 <= 1
    if shape == "rectangle":
        return np.ones((h, w), dtype=bool)
    if shape == "triangle":
        return np.abs(u) <= (v + 1) / 2
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if shape == "cross":
        return (np.abs(u) <= 0.35) | (np.abs(v) <= 0.35)
    raise ValueError(f"unknown shape {shape!r}")


def _place(rng: np.random.Generator, count: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (x, y, w, h) boxes for `count` instances (fewer if they do not fit)."""
    placed: list[tuple[int, int, int, int]] = []
    low, high = (24, 46) if count == 1 else (16, 28)
    for _ in range(100):
        side = int(rng.integers(low, high + 1))
        aspect = float(rng.uniform(0.7, 1.3))
        w, h = side, min(SIZE - 4, max(8, round(side * aspect)))
        x, y = int(rng.integers(0, SIZE - w + 1)), int(rng.integers(0, SIZE - h + 1))
        if all(
            x + w + 1 < px or px + pw + 1 < x or y + h + 1 < py or py + ph + 1 < y
            for px, py, pw, ph in placed
        ):
            placed.append((x, y, w, h))
            if len(placed) == count:
                break
    return placed


def _distinct_color(rng: np.random.Generator, avoid: np.ndarray, margin: float) -> np.ndarray:
    while True:
        color = _muted(rng.uniform(0, 255, 3))
        if np.abs(color - avoid).sum() > margin:
            return color


def _muted(color: np.ndarray) -> np.ndarray:
    """Halfway to its own grey: body and distractor colours stay less saturated than every class cue."""
    return (color + color.mean()) / 2


def render(seed: int, split: str, index: int) -> Sample:
    """Render image `index` of `split` (its label is `label_of(split, index)`)."""
    rng = np.random.default_rng([seed, SPLIT_CODE[split], index])
    label = label_of(split, index)
    shape, cue = SHAPES[label // len(CUES)], CUES[label % len(CUES)]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]

    # Background: a gradient between two dull colours.
    base = rng.uniform(40, 200, 3)
    direction = rng.uniform(-1, 1, 2)
    ramp = (xx * direction[0] + yy * direction[1]) / SIZE
    image = base + ramp[..., None] * rng.uniform(-60, 60, 3)

    # Distractors: plain discs and bars, and dotted patches (never the class cue textures).
    for _ in range(int(rng.integers(3, 8))):
        cx, cy, r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(2, 7)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            region = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        elif kind == 1:
            region = (np.abs(xx - cx) <= r * 1.5) & (np.abs(yy - cy) <= 1)
        else:
            region = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r) & (xx % 3 == 0) & (yy % 3 == 0)
        image[region] = _muted(rng.uniform(0, 255, 3))

    count = 2 if rng.uniform() < TWO_INSTANCE_PROBABILITY else 1
    masks, boxes = [], []
    for x, y, w, h in _place(rng, count):
        local = _silhouette(shape, w, h, int(rng.integers(0, 4)))
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[y : y + h, x : x + w] = local
        image[mask] = _distinct_color(rng, base, 150)
        # The class cue: the cue texture on one end of the object.
        side = int(rng.integers(0, 4))
        coord = (xx - x) / w if side < 2 else (yy - y) / h
        end = coord < CUE_FRACTION if side % 2 == 0 else coord >= 1 - CUE_FRACTION
        pattern = (yy // 2) % 2 == 0 if cue == "stripes" else ((xx // 2) + (yy // 2)) % 2 == 0
        image[mask & end & pattern] = CUE_COLORS[label]
        image[mask & end & ~pattern] = CUE_DARK
        rows, cols = np.nonzero(mask)
        masks.append(mask)
        boxes.append((int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())))

    image = image + rng.normal(0, 6, image.shape)
    return Sample(np.clip(np.rint(image), 0, 255).astype(np.uint8), masks, boxes)


def generate(dest: Path, seed: int) -> None:
    """Write images/ and metadata/{train,val,test} of the dataset into `dest` (no dataset.yaml)."""
    for split, per_class in PER_CLASS.items():
        meta = Metadata(image_ids=[], labels={})
        for index in range(per_class * len(CLASSES)):
            sample = render(seed, split, index)
            label = label_of(split, index)
            name = image_id(split, index, label)
            path = dest / "images" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sample.image, mode="RGB").save(
                path, format="PNG", optimize=False, compress_level=6
            )
            meta.image_ids.append(name)
            meta.labels[name] = label
            meta.sizes[name] = (SIZE, SIZE)
            meta.boxes[name] = sample.boxes
        write_metadata(dest / "metadata" / split, meta)


class SyntheticAdapter(DatasetAdapter):
    """Generates the dataset (see the module docstring); `source` is not used."""

    name = "synthetic"
    num_classes = len(CLASSES)
    description = f"generated {SIZE}x{SIZE} shapes with partial texture cues (built in, no download)"
    source_hint = "none: the dataset is generated (`python bench.py prepare synthetic`)"
    needs_source = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def official_train_images(self) -> tuple[int, str]:
        return PER_CLASS["train"] * self.num_classes, "generated on first use"

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        dest = Path(dest)
        if (dest / "dataset.yaml").is_file():
            existing = open_dataset(dest)
            if existing.name != self.name:
                raise FileExistsError(
                    f"{dest} holds dataset {existing.name!r}, not {self.name!r}; choose another --data-root"
                )
            if existing.version == VERSION and existing.extra.get("seed") == self.seed:
                return existing
            warnings.warn(
                f"{dest}: synthetic version {existing.version} seed {existing.extra.get('seed')} replaced by "
                f"version {VERSION} seed {self.seed}",
                stacklevel=2,
            )
        elif dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty and holds no dataset.yaml; refusing to overwrite it")
        with staged(dest) as stage:
            generate(stage, self.seed)
            write_dataset_info(
                PreparedDataset(
                    name=self.name,
                    root=stage,
                    num_classes=self.num_classes,
                    image_root=Path("images"),
                    mask_root=None,
                    version=VERSION,
                    extra={"seed": self.seed, "classes": list(CLASSES), "images_per_class": dict(PER_CLASS)},
                )
            )
        return open_dataset(dest)


register_dataset("synthetic")(SyntheticAdapter())
