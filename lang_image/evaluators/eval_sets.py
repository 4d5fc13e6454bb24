"""Eval sets: what one dataset offers the evaluators, and the registry of datasets by name.

An `EvalSet` holds a test split (images, and labels for classification), class names and
prompt templates for zero-shot classification, captions for retrieval, and optionally a
training and a validation split for the linear probe and k-NN. Loaders build one by name:

    shapes          the embedded dataset's eval split (config.eval.split), with the single-
                    object train images and the validation split for the probes (`shapes_sets`)
    scenes          the multi-object benchmark's eval split: several named label sets for
                    zero-shot and the probes, retrieval on its captions (`scenes_sets`)
    cifar10, cifar100, imagenet2012, coco_captions
                    tfds datasets prepared on disk (`tfds_sets`)
    /data/mnist, wds:..., csv:..., jsonl:... with class names
                    zero-shot and retrieval on labelled sets (`benchmark_sets`)
    wds:..., csv:..., jsonl:..., tfds:...
                    retrieval on the first samples of any data source (`source_sets`)

A module that loads eval sets registers them here (`register(name, loader)`, or
`register_family` for every name a predicate accepts); a loader takes the name and a
`LoadContext` and returns an `EvalSet`; `lang_image.evaluators` imports the loaders' modules.
Class names and templates come from text files in `prompts/` (one entry per line, `#` starts
a comment line; `read_lines`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np

PROMPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")


class ImageStream:
  """Images read in order chunk by chunk, for test splits too large to hold in memory."""

  def __init__(self, length: int, read: Callable[[], Iterator[np.ndarray]]):
    self._length = length
    self._read = read  # a fresh iterator of uint8 [H, W, 3] images, in order

  def __len__(self) -> int:
    return self._length

  def chunks(self, size: int) -> Iterator[np.ndarray]:
    chunk = []
    for image in self._read():
      chunk.append(image)
      if len(chunk) == size:
        yield np.stack(chunk)
        chunk = []
    if chunk:
      yield np.stack(chunk)


def image_chunks(images, size: int) -> Iterator[np.ndarray]:
  """uint8 [<=size, H, W, 3] chunks, in order, of an image array or an ImageStream."""
  if isinstance(images, ImageStream):
    yield from images.chunks(size)
  else:
    for start in range(0, len(images), size):
      yield images[start:start + size]


def first_images(images, n: int) -> np.ndarray:
  """The first n images (fewer if there are fewer) of an image array or an ImageStream."""
  return next(image_chunks(images, n))


@dataclasses.dataclass
class Split:
  """Images (uint8 [N, H, W, 3], an array or an ImageStream) and integer labels [N] or None."""
  images: object
  labels: np.ndarray | None = None


@dataclasses.dataclass
class LabelSet:
  """One named labelling of the images, beside or instead of EvalSet's own labels: zero-shot
  when it has class names and templates, the probes when it has fit labels. A label of -1
  means the label set does not apply to that image (it is left out of the task)."""
  classes: list[str]
  test: np.ndarray
  templates: list[str] | None = None
  subsets: dict = dataclasses.field(default_factory=dict)
  fit: np.ndarray | None = None
  validation: np.ndarray | None = None


@dataclasses.dataclass
class EvalSet:
  # The dataset's name in CLIP_benchmark's results ('cifar10', 'imagenet1k', ...).
  name: str
  test: Split
  # Zero-shot classification: class names in label order and prompt templates ("{}").
  classes: list[str] | None = None
  templates: list[str] | None = None
  # Retrieval: caption texts and the index of the test image each belongs to.
  captions: list[str] | None = None
  caption_image: np.ndarray | None = None
  # Boolean masks over the test examples; zero-shot reports top-k on each (`top1_<name>`).
  subsets: dict = dataclasses.field(default_factory=dict)
  # Linear probe and k-NN: fitted on `fit`, the probe's penalty chosen on `validation`.
  fit: Split | None = None
  validation: Split | None = None
  # Named label sets; each task reports its metrics as '<task>/<label set>/<metric>'.
  label_sets: dict[str, LabelSet] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LoadContext:
  dataset: object  # the training data (pipeline.Dataset): tokenizer, embedded splits
  eval_cfg: object  # config.eval
  image_size: int  # the model's input resolution
  tfds_data_dir: str | None = None  # where tfds eval datasets are prepared (None: tfds default)
  probes: bool = True  # whether the linear probe or k-NN will run (their splits are loaded)


Loader = Callable[[str, LoadContext], EvalSet]
LOADERS: dict[str, Loader] = {}
# Loaders of whole families of names (any data source spec), tried after LOADERS: (does the
# name belong to the family, loader, a description for messages).
FAMILIES: list[tuple[Callable[[str], bool], Loader, str]] = []


def register(name: str, loader: Loader) -> None:
  LOADERS[name] = loader


def register_family(matches: Callable[[str], bool], loader: Loader, description: str,
                    first: bool = False) -> None:
  """Adds a family, tried after those registered before it, or before all of them (`first`)."""
  FAMILIES.insert(0 if first else len(FAMILIES), (matches, loader, description))


def open_eval_set(name: str, context: LoadContext) -> EvalSet:
  if name in LOADERS:
    return LOADERS[name](name, context)
  for matches, loader, _ in FAMILIES:
    if matches(name):
      return loader(name, context)
  examples = "".join(f" and {example}" for _, _, example in FAMILIES)
  raise ValueError(f"unknown eval dataset '{name}'; the known ones are {sorted(LOADERS)}"
                   f"{examples}.")


def read_lines(name: str) -> list[str]:
  """Entries of a prompt file: a name in prompts/ ('cifar10_classes') or a path."""
  path = name if os.path.sep in name or name.endswith(".txt") else os.path.join(
      PROMPTS_DIR, name + ".txt")
  if not os.path.isfile(path):
    known = sorted(f[:-4] for f in os.listdir(PROMPTS_DIR) if f.endswith(".txt"))
    raise ValueError(f"no prompt file '{path}'; use one of {known} or a path to a text file "
                     f"with one entry per line.")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip() and not line.startswith("#")]
