"""Eval sets: what one dataset offers the evaluators, and the registry of datasets by name.

An `EvalSet` holds a test split (images, and labels for classification), class names and
prompt templates for zero-shot classification, captions for retrieval, and optionally a
training and a validation split for the linear probe and k-NN. Loaders build one by name:

    shapes          the embedded dataset's eval split (config.eval.split), with the single-
                    object train images and the validation split for the probes
    cifar10, cifar100, imagenet2012, coco_captions
                    tfds datasets prepared on disk (`tfds_sets`)
    wds:..., csv:..., jsonl:..., tfds:...
                    retrieval on the first samples of any data source (`source_sets`)

A new source (e.g. webdataset shards) plugs in with `register(name, loader)`: a loader takes
a `LoadContext` and returns an `EvalSet`. Class names and templates come from text files in
`prompts/` (one entry per line, `#` starts a comment line; `read_lines`).
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


@dataclasses.dataclass
class LoadContext:
  dataset: object  # the training data (pipeline.Dataset): tokenizer, embedded splits
  eval_cfg: object  # config.eval
  image_size: int  # the model's input resolution
  tfds_data_dir: str | None = None  # where tfds eval datasets are prepared (None: tfds default)
  probes: bool = True  # whether the linear probe or k-NN will run (their splits are loaded)


LOADERS: dict[str, Callable[[LoadContext], EvalSet]] = {}


def register(name: str, loader: Callable[[LoadContext], EvalSet]) -> None:
  LOADERS[name] = loader


def open_eval_set(name: str, context: LoadContext) -> EvalSet:
  from lang_image.evaluators import source_sets  # noqa: PLC0415
  if name not in LOADERS and source_sets.is_source(name):
    return source_sets.load(name, context)
  if name not in LOADERS:
    raise ValueError(f"unknown eval dataset '{name}'; the known ones are {sorted(LOADERS)} "
                     "and data sources such as wds:/data/val/{00000..00003}.tar.")
  return LOADERS[name](context)


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


def _read_shapes(source, limit=None, single_object=False, with_text=False) -> dict:
  images, labels, held_out, captions, index = [], [], [], [], []
  for i in range(len(source)):
    example = source[i]
    if single_object and int(example["n_objects"]) != 1:
      continue
    images.append(np.asarray(example["image"], np.uint8))
    labels.append(int(example["label"]))
    held_out.append(bool(example["held_out"]))
    index.append(i)
    if with_text:
      caption = example["caption"]
      captions.append(caption.decode("utf-8") if isinstance(caption, bytes) else str(caption))
    if limit is not None and len(images) >= limit:
      break
  return {"image": np.stack(images), "label": np.asarray(labels, np.int32),
          "held_out": np.asarray(held_out, bool), "caption": captions, "index": index}


def embedded(dataset, eval_cfg, probes: bool = True) -> EvalSet:
  """The embedded dataset's eval split; probes fit on up to `linear_probe_examples` single-
  object train images (their label names their one object) and tune on the validation split."""
  from lang_image.data import shapes  # noqa: PLC0415
  split = eval_cfg.split
  test = _read_shapes(dataset.source(split), with_text=True)
  per_image = int(eval_cfg.captions_per_image)
  if per_image < 1:
    raise ValueError(f"config.eval.captions_per_image must be at least 1, got {per_image}.")
  captions, caption_image = [], []
  for row, (index, caption) in enumerate(zip(test["index"], test["caption"])):
    extra = shapes.captions(split, index, per_image)[1:] if per_image > 1 else []
    captions += [caption, *extra]
    caption_image += [row] * per_image
  eval_set = EvalSet(
      name=dataset.builder.name, test=Split(test["image"], test["label"]),
      classes=list(dataset.classes), templates=list(dataset.templates),
      captions=captions, caption_image=np.asarray(caption_image),
      subsets={"seen": ~test["held_out"], "unseen": test["held_out"]})
  if probes:
    fit = _read_shapes(dataset.source("train"), limit=eval_cfg.linear_probe_examples,
                       single_object=True)
    val = _read_shapes(dataset.source("validation"))
    eval_set.fit = Split(fit["image"], fit["label"])
    eval_set.validation = Split(val["image"], val["label"])
  return eval_set


register("shapes", lambda c: embedded(c.dataset, c.eval_cfg, c.probes))
