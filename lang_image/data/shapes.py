"""Procedurally generated coloured-shape scenes with English captions.

Small enough to train a CLIP-style model on a laptop CPU in minutes, with
enough nuisance (size, position, rotation, background, a second object, varied
sentences) that the model must bind colour and shape words to pixels. Some
colour-shape pairs never occur in training: zero-shot accuracy on them measures
compositional generalisation. Example k of a split depends only on
(seed, split, k), so any subset can be generated in any order or in parallel.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from lang_image.data import scene_render

IMAGE_SIZE = 64

# Saturated and far apart in RGB, so that they stand out from the pale
# background and survive the per-object colour jitter.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (235, 210, 25),
    "green": (40, 160, 50), "cyan": (30, 200, 215), "blue": (35, 70, 215),
    "purple": (135, 50, 185), "pink": (245, 120, 195),
}
# Chosen for distinct silhouettes at ~16 px; a diamond would just be a rotated
# square and a hexagon blurs into a circle at that size.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")

CLASSES: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
NUM_CLASSES = len(CLASSES)

# Each colour and each shape appears at most once, so every held-out pair's
# colour and shape are still seen in training with other partners.
HELD_OUT: tuple[str, ...] = (
    "red star", "orange heart", "yellow cross", "green triangle", "blue circle", "pink square")
HELD_OUT_LABELS: frozenset[int] = frozenset(CLASSES.index(c) for c in HELD_OUT)
TRAIN_LABELS: tuple[int, ...] = tuple(i for i in range(NUM_CLASSES) if i not in HELD_OUT_LABELS)

# Deliberately free of "a"/"an" in front of the class name, which would be
# ungrammatical for "orange ..."; captions use the same phrasings.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of one {}.", "a photo of the {}.", "a picture of one {}.", "one {}.", "the {}.",
    "one {} on a plain background.", "a drawing of one {}.", "there is one {} in the picture.",
)

SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "default": {"train": 50_000, "validation": 1_000, "test": 50 * NUM_CLASSES},
    "tiny": {"train": 2_000, "validation": 240, "test": 10 * NUM_CLASSES},
}
DEFAULT_SEED = 0

# Diameter ranges in pixels and the words that may describe them.
_SIZES = {
    "small": ((18.0, 23.0), ("small", "little", "tiny")),
    "medium": ((24.0, 29.0), ("medium",)),
    "large": ((30.0, 36.0), ("large", "big")),
}
_SIZE_WORD_PROB = {"small": 0.25, "medium": 0.1, "large": 0.25}
_SHAPE_SYNONYMS = {"circle": "disc", "cross": "plus sign"}
_SYNONYM_PROB = 0.08
_MAX_ROTATION = 15.0  # degrees; more would turn a square into a diamond

_POSITIONS = {
    (0, 0): ("in the top left", "in the top left corner", "at the top left"),
    (0, 1): ("at the top", "near the top", "in the top middle"),
    (0, 2): ("in the top right", "in the top right corner", "at the top right"),
    (1, 0): ("on the left", "on the left side", "near the left edge"),
    (1, 1): ("in the centre", "in the middle", "near the centre"),
    (1, 2): ("on the right", "on the right side", "near the right edge"),
    (2, 0): ("in the bottom left", "in the bottom left corner", "at the bottom left"),
    (2, 1): ("at the bottom", "near the bottom", "in the bottom middle"),
    (2, 2): ("in the bottom right", "in the bottom right corner", "at the bottom right"),
}
_BACKGROUNDS = ("plain", "grey", "light", "pale")

# Sentence frames without (False) and with (True) the objects' placement.
# Placement and size are mentioned in a minority of captions: if these easy
# cues told a batch's captions apart, the model would never need shapes.
_PLACE_PROB = 0.25
_SINGLE_FRAMES = {
    False: ("{x}.", "a photo of {x}.", "a picture of {x}.", "{x} on a {bg} background.",
            "a drawing of {x} on a {bg} background.", "an image of {x}.",
            "there is {x} in the picture."),
    True: ("{x} {pos}.", "a photo of {x} {pos}.", "a picture of {x} {pos}.",
           "there is {x} {pos}.", "{pos} there is {x}.", "the picture shows {x} {pos}."),
}
_PAIR_FRAMES = {
    False: ("{x} and {y}.", "a photo of {x} and {y}.", "a picture of {x} and {y}.",
            "two shapes: {x} and {y}.", "{x} next to {y}.", "{x} and {y} on a {bg} background."),
    True: ("{x} {rel} {y}.", "a photo of {x} {rel} {y}.", "{x} {xpos} and {y} {ypos}.",
           "there is {x} {xpos} and {y} {ypos}."),
}


def held_out_mask() -> np.ndarray:
  """Boolean [NUM_CLASSES] mask of the classes never seen in training."""
  return np.array([i in HELD_OUT_LABELS for i in range(NUM_CLASSES)])


def _choice(rng: np.random.Generator, options):
  return options[int(rng.integers(len(options)))]


def _sample_object(rng, label: int) -> dict:
  size = _choice(rng, tuple(_SIZES))
  lo, hi = _SIZES[size][0]
  diameter = float(rng.uniform(lo, hi))
  radius = diameter / 2
  # The +1 margin keeps the anti-aliased edge inside the image.
  cx, cy = rng.uniform(radius + 1, IMAGE_SIZE - radius - 1, size=2)
  colour, shape = CLASSES[label].split(" ")
  angle = 0.0 if shape == "circle" else float(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION))
  return dict(label=label, colour=colour, shape=shape, size=size, diameter=diameter,
              cx=float(cx), cy=float(cy), angle=angle)


def _apart(a: dict, b: dict) -> bool:
  dist = math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"])
  return dist >= (a["diameter"] + b["diameter"]) / 2 + 1


def _noun_phrase(rng, obj: dict, determiners) -> str:
  words = [obj["colour"], obj["shape"]]
  if rng.random() < _SIZE_WORD_PROB[obj["size"]]:
    words.insert(0, _choice(rng, _SIZES[obj["size"]][1]))
  if obj["shape"] in _SHAPE_SYNONYMS and rng.random() < _SYNONYM_PROB:
    words[-1] = _SHAPE_SYNONYMS[obj["shape"]]
  det = _choice(rng, determiners)
  if det == "a" and words[0][0] in "aeiou":
    det = "an"
  return " ".join([det] + words)


def _position(rng, obj: dict) -> str:
  cell = (min(int(obj["cy"] * 3 / IMAGE_SIZE), 2), min(int(obj["cx"] * 3 / IMAGE_SIZE), 2))
  return _choice(rng, _POSITIONS[cell])


def _relation(x: dict, y: dict) -> str:
  dx, dy = y["cx"] - x["cx"], y["cy"] - x["cy"]
  if abs(dx) >= abs(dy):
    return "to the left of" if dx > 0 else "to the right of"
  return "above" if dy > 0 else "below"


_DETERMINERS = ("a",) * 13 + ("one",) * 4 + ("the",) * 3


def _caption(rng, objects: list[dict]) -> str:
  bg = _choice(rng, _BACKGROUNDS)
  place = bool(rng.random() < _PLACE_PROB)
  if len(objects) == 1:
    (obj,) = objects
    frame = _choice(rng, _SINGLE_FRAMES[place])
    # "there is the ..." reads badly.
    determiners = ("a", "a", "one") if "there is" in frame else _DETERMINERS
    x = _noun_phrase(rng, obj, determiners)
    return frame.format(x=x, pos=_position(rng, obj), bg=bg)
  x_obj, y_obj = objects
  frame = _choice(rng, _PAIR_FRAMES[place])
  return frame.format(
      x=_noun_phrase(rng, x_obj, ("a", "a", "a", "one")),
      y=_noun_phrase(rng, y_obj, ("a", "a", "a", "one")),
      xpos=_position(rng, x_obj), ypos=_position(rng, y_obj),
      rel=_relation(x_obj, y_obj), bg=bg)


def describe(split: str, index: int, seed: int = DEFAULT_SEED) -> dict:
  """Caption, labels and scene spec (`objects`, in order of mention), no pixels.

  Cheap (tens of microseconds), e.g. for training a tokenizer on the captions.
  """
  # Stream 0 decides the scene and caption, stream 1 the pixel noise, so
  # this function never has to touch the renderer's random draws.
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, 0])
  if split == "train":
    n_objects = 1 if rng.random() < 0.7 else 2
    labels = rng.choice(TRAIN_LABELS, size=n_objects, replace=False)
  else:
    # Exactly balanced over every class, held-out ones included.
    n_objects, labels = 1, [index % NUM_CLASSES]
  objects = [_sample_object(rng, int(label)) for label in labels]
  # Redrawing both objects, not just the second, can never get stuck behind a
  # large first object, and treats the two objects alike.
  while n_objects == 2 and not _apart(*objects):
    objects = [_sample_object(rng, int(label)) for label in labels]
  label = objects[0]["label"]
  return dict(caption=_caption(rng, objects), label=label, n_objects=n_objects,
              held_out=label in HELD_OUT_LABELS, objects=objects)


def captions(split: str, index: int, n: int, seed: int = DEFAULT_SEED) -> list[str]:
  """`n` captions of example `index`: its own caption (as stored in the dataset), then
  n - 1 further descriptions of the same scene, each from its own random stream (2, 3, ...),
  for retrieval with several captions per image. Captions may repeat."""
  example = describe(split, index, seed)
  extra = [_caption(np.random.default_rng([seed, _SPLIT_IDS[split], index, 2 + j]),
                    example["objects"]) for j in range(n - 1)]
  return [example["caption"], *extra]


def generate(split: str, index: int, seed: int = DEFAULT_SEED) -> dict:
  """Example `index` of `split`.

  Returns a dict with `image` uint8 [64, 64, 3], `caption` str, `label` int
  (class of the first mentioned object), `n_objects` int, `held_out` bool and
  `objects` (the scene specification, see `describe`).
  """
  example = describe(split, index, seed)
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, 1])
  example["image"] = scene_render.render(example["objects"], rng, COLOURS, IMAGE_SIZE)
  return example


def encode_png(image: np.ndarray) -> bytes:
  """Lossless PNG bytes; fast compression since the images are tiny."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def encoded_examples(split: str, start: int, stop: int, seed: int = DEFAULT_SEED) -> list[dict]:
  """Examples [start, stop) with PNG images and no scene spec (TF-free, for workers)."""
  examples = [generate(split, index, seed) for index in range(start, stop)]
  return [dict({k: v for k, v in ex.items() if k != "objects"}, image=encode_png(ex["image"]))
          for ex in examples]
