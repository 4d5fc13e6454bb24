"""`scenes`: generated multi-object scenes with web-like captions, a benchmark with headroom.

Each 64 x 64 image holds one to four non-overlapping objects. An object has a shape (SHAPES),
a colour (COLOURS), a size (SIZES), a texture (scene_render.TEXTURES) and a position; two
objects stand in a spatial relation. A caption (scenes_captions.py) mentions a random subset
of the objects and of their attributes in varied wording and order, so almost every caption
is unique and texture and size are named rarely. A fraction of the training captions can be
made noisy at read time (`noisy_caption`, config.data.caption_noise).

Splits: `train` scenes draw colour-shape pairs from all but HELD_OUT. `validation` and `test`
cycle through 1, 2, 3, 4 objects (index % 4 + 1); their single-object scenes are balanced
over every colour-shape pair, held-out ones included, and carry the attribute label sets
(`labels`): zero-shot on colour, shape, colour_shape and full (size, colour and shape), and
probes on texture, size and shape. Count is labelled on every scene.

Example k of a split depends only on (DEFAULT_SEED, split, k). The data's `version()` is a
hash of the generator's source files and parameters: the prepared files live under a
directory named by it, so a changed generator never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import io
import math
import os

import numpy as np
from PIL import Image

from lang_image.data import scene_render, scenes_captions, shapes

IMAGE_SIZE = scenes_captions.IMAGE_SIZE
COLOURS = shapes.COLOURS
SHAPES = shapes.SHAPES
TEXTURES = scene_render.TEXTURES
# Diameter ranges in pixels; far enough apart to be told apart at 64 px.
# At most IMAGE_SIZE / 2 - 2, so that four objects always fit one per quadrant (_place).
SIZES: dict[str, tuple[float, float]] = {"small": (18.0, 22.0), "large": (26.0, 30.0)}
COUNTS = (1, 2, 3, 4)
# Probabilities of 1, 2, 3, 4 objects in a training scene.
TRAIN_COUNT_PROBS = (0.5, 0.25, 0.15, 0.1)
MAX_ROTATION = 15.0  # degrees
# Random layouts tried before objects are placed one per quadrant.
_RANDOM_LAYOUTS = 20

PAIRS: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
# Compositions never seen in training (each colour and shape at most once, so both are seen
# with other partners).
HELD_OUT: tuple[str, ...] = (
    "red heart", "orange star", "yellow circle", "green cross", "blue triangle", "purple square")
TRAIN_PAIRS: tuple[int, ...] = tuple(i for i, p in enumerate(PAIRS) if p not in HELD_OUT)

SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "default": {"train": 40_000, "validation": 1_600, "test": 3_200},
    "tiny": {"train": 2_000, "validation": 400, "test": 800},
}
DEFAULT_SEED = 0

# Files whose text, with `parameters()`, makes the version.
_GENERATOR_FILES = (scene_render.__file__, shapes.__file__, scenes_captions.__file__, __file__)


def parameters() -> dict:
  """Everything besides the source text that decides the generated data."""
  return dict(image_size=IMAGE_SIZE, colours=COLOURS, shapes=SHAPES, textures=TEXTURES,
              sizes=SIZES, counts=COUNTS, train_count_probs=TRAIN_COUNT_PROBS,
              held_out=HELD_OUT, split_sizes=SPLIT_SIZES, seed=DEFAULT_SEED,
              max_rotation=MAX_ROTATION, random_layouts=_RANDOM_LAYOUTS)


def version(files=_GENERATOR_FILES, params: dict | None = None) -> str:
  """12 hex digits of a SHA-256 over the generator's files and parameters."""
  digest = hashlib.sha256(repr(sorted((params or parameters()).items())).encode())
  for path in files:
    with open(path, "rb") as f:
      digest.update(os.path.basename(path).encode() + b"\0" + f.read())
  return digest.hexdigest()[:12]


def _sample_object(rng, pair: int) -> dict:
  size = tuple(SIZES)[int(rng.integers(len(SIZES)))]
  lo, hi = SIZES[size]
  diameter = float(rng.uniform(lo, hi))
  colour, shape = PAIRS[pair].split(" ")
  texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
  angle = 0.0 if shape == "circle" else float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
  return dict(pair=pair, colour=colour, shape=shape, size=size, texture=texture,
              diameter=diameter, angle=angle)


def _place(rng, objects: list[dict]) -> None:
  """Sets each object's centre so that no two overlap (a 2 px gap keeps them separate
  blobs): up to _RANDOM_LAYOUTS layouts drawn uniformly at random, then, when large objects
  leave no room (most often four of them), one object per quadrant at a random offset
  inside it."""
  for _ in range(_RANDOM_LAYOUTS):
    placed = []
    for obj in objects:
      r = obj["diameter"] / 2
      for _ in range(50):
        cx, cy = (float(v) for v in rng.uniform(r + 1, IMAGE_SIZE - r - 1, size=2))
        if all(math.hypot(cx - o["cx"], cy - o["cy"]) >= r + o["diameter"] / 2 + 2
               for o in placed):
          placed.append(dict(obj, cx=cx, cy=cy))
          break
      else:
        break
    if len(placed) == len(objects):
      objects[:] = placed
      return
  half = IMAGE_SIZE / 2
  cells = rng.permutation(4)[:len(objects)]
  for i, (obj, cell) in enumerate(zip(objects, cells)):
    r = obj["diameter"] / 2
    x0, y0 = half * (cell % 2), half * (cell // 2)
    cx, cy = (float(v) for v in rng.uniform((x0 + r + 1, y0 + r + 1),
                                             (x0 + half - r - 1, y0 + half - r - 1)))
    objects[i] = dict(obj, cx=cx, cy=cy)


def scene(split: str, index: int, seed: int = DEFAULT_SEED) -> tuple[list[dict], np.random.Generator]:
  """The objects of example `index` and the random stream that goes on to its caption."""
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, 0])
  if split == "train":
    n = int(rng.choice(COUNTS, p=TRAIN_COUNT_PROBS))
    pairs = [int(p) for p in rng.choice(TRAIN_PAIRS, size=n)]
  else:
    n = COUNTS[index % len(COUNTS)]
    if n == 1:
      pairs = [(index // len(COUNTS)) % len(PAIRS)]
    else:
      pairs = [int(p) for p in rng.choice(TRAIN_PAIRS, size=n)]
  objects = [_sample_object(rng, p) for p in pairs]
  _place(rng, objects)
  return objects, rng


def describe(split: str, index: int, seed: int = DEFAULT_SEED) -> dict:
  """Caption, labels and the scene (`objects`), without pixels (tens of microseconds)."""
  objects, rng = scene(split, index, seed)
  plan = scenes_captions.plan(rng, objects)
  return dict(caption=scenes_captions.render(plan, objects), objects=objects, plan=plan,
              **labels(objects))


def labels(objects: list[dict]) -> dict:
  """Integer labels of a scene, -1 where a label set does not apply (the attribute label
  sets apply to single-object scenes): count, colour, shape, colour_shape, size, texture,
  full; and held_out (a held-out composition is in the scene)."""
  out = {"count": len(objects) - 1,
         "held_out": any(PAIRS[o["pair"]] in HELD_OUT for o in objects)}
  single = objects[0] if len(objects) == 1 else None
  for name in ("colour", "shape", "colour_shape", "size", "texture", "full"):
    out[name] = -1 if single is None else LABEL_SETS[name].index(class_name(name, single))
  return out


def class_name(label_set: str, obj: dict) -> str:
  """The class of one object in an attribute label set (as a phrase a caption could use)."""
  words = {"colour": [obj["colour"]], "shape": [obj["shape"]], "size": [obj["size"]],
           "texture": [obj["texture"]], "colour_shape": [obj["colour"], obj["shape"]],
           "full": [obj["size"], obj["colour"], obj["shape"]]}
  return " ".join(words[label_set])


def _all_objects():
  for size in SIZES:
    for texture in TEXTURES:
      for pair, name in enumerate(PAIRS):
        colour, shape = name.split(" ")
        yield dict(pair=pair, colour=colour, shape=shape, size=size, texture=texture)


COUNT_CLASSES = ["one shape", "two shapes", "three shapes", "four shapes"]
LABEL_SETS: dict[str, list[str]] = {"count": COUNT_CLASSES}
for _name in ("colour", "shape", "size", "texture", "colour_shape", "full"):
  LABEL_SETS[_name] = list(dict.fromkeys(class_name(_name, o) for o in _all_objects()))


def held_out_classes(label_set: str) -> np.ndarray:
  """Boolean mask over the classes of colour_shape or full: those never seen in training."""
  return np.array([" ".join(c.split(" ")[-2:]) in HELD_OUT for c in LABEL_SETS[label_set]])


def noisy_caption(index: int, caption: str, fraction: float,
                  seed: int = DEFAULT_SEED) -> tuple[str, str | None]:
  """Training caption `index` after the read-time noise: with probability `fraction` it is
  replaced, half the time by the caption of another scene ('swap'), else by the same caption
  with one mentioned attribute of one object changed to a wrong value ('attribute'). Returns
  the caption and the kind of noise (None: clean). Deterministic in (seed, index)."""
  if fraction <= 0:
    return caption, None
  rng = np.random.default_rng([seed, _SPLIT_IDS["train"], index, 3])
  if rng.random() >= fraction:
    return caption, None
  if rng.random() < 0.5:
    # Any other scene of the training distribution, not only of the stored split.
    other = index + 1 + int(rng.integers(1 << 40))
    return describe("train", other, seed)["caption"], "swap"
  example = describe("train", index, seed)
  plan, wrong = scenes_captions.corrupt(rng, example["plan"], example["objects"], COLOURS,
                                       SHAPES, SIZES, TEXTURES)
  return scenes_captions.render(plan, wrong), "attribute"


def generate(split: str, index: int, seed: int = DEFAULT_SEED) -> dict:
  """`describe` plus `image`, uint8 [64, 64, 3]."""
  example = describe(split, index, seed)
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, 1])
  example["image"] = scene_render.render(example["objects"], rng, COLOURS, IMAGE_SIZE)
  return example


def captions(split: str, index: int, n: int, seed: int = DEFAULT_SEED) -> list[str]:
  """`n` captions of example `index`: its stored one, then n - 1 more of the same scene, each
  from its own random stream (2, 3, ...)."""
  example = describe(split, index, seed)
  extra = [scenes_captions.render(scenes_captions.plan(
      np.random.default_rng([seed, _SPLIT_IDS[split], index, 4 + j]), example["objects"]),
      example["objects"]) for j in range(n - 1)]
  return [example["caption"], *extra]


STORED_LABELS = ("count", "colour", "shape", "colour_shape", "size", "texture", "full")


def encoded_examples(split: str, start: int, stop: int, seed: int = DEFAULT_SEED) -> list[dict]:
  """Examples [start, stop) as stored: PNG image, caption, labels (TF-free, for workers)."""
  out = []
  for index in range(start, stop):
    ex = generate(split, index, seed)
    buf = io.BytesIO()
    Image.fromarray(ex["image"]).save(buf, format="PNG", compress_level=1)
    out.append(dict({k: ex[k] for k in STORED_LABELS}, image=buf.getvalue(),
                    caption=ex["caption"], held_out=ex["held_out"]))
  return out
