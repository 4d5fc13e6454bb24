"""Eval sets from tfds datasets prepared on disk: CIFAR-10/100, ImageNet-1k, COCO captions.

Nothing is downloaded: `tfds.builder(name, data_dir=...)` must find the dataset already
prepared (e.g. by `tfds build cifar10 --data_dir=DIR` on a machine with network access, or
from ImageNet's manual download), else loading stops with one sentence saying so.

Images are resized on the host to the model's resolution: the shorter side to `image_size`
(bicubic), then a centred square crop. Test images are streamed chunk by chunk, so ImageNet's
50,000 validation images are never all in memory. For the probes (linear probe, k-NN) the
training split is cut in two: its first `config.eval.linear_probe_examples` examples fit, the
next `PROBE_VALIDATION` (at most a fifth of the split) choose the probe's penalty (tfds
shuffles examples when it prepares a dataset, so a prefix is a random subset).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from lang_image.evaluators import eval_sets

PROBE_VALIDATION = 1000


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  tfds_name: str
  benchmark_name: str  # as CLIP_benchmark names it in its results
  test_split: str
  train_split: str | None = None  # probes' fit and validation examples; None: no probes
  classes: str | None = None  # prompt file of class names, in label order
  templates: str | None = None  # prompt file of templates
  captions: bool = False  # examples carry captions['text'] (retrieval)


SPECS = {
    "cifar10": TfdsSpec("cifar10", "cifar10", "test", "train", "cifar10_classes",
                        "cifar_templates"),
    "cifar100": TfdsSpec("cifar100", "cifar100", "test", "train", "cifar100_classes",
                         "cifar_templates"),
    "imagenet2012": TfdsSpec("imagenet2012", "imagenet1k", "validation", "train",
                             "imagenet_classes", "imagenet_templates"),
    # Karpathy and Li's 5,000-image test split, about 5 captions per image.
    "coco_captions": TfdsSpec("coco_captions", "mscoco_captions", "test", captions=True),
}


def fit_image(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 [size, size, 3]: shorter side to `size`, centre crop."""
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  height, width = image.shape[:2]
  if (height, width) == (size, size):
    return image
  scale = size / min(height, width)
  new = (max(size, round(width * scale)), max(size, round(height * scale)))
  resized = np.asarray(Image.fromarray(image).resize(new, Image.BICUBIC))
  top, left = (new[1] - size) // 2, (new[0] - size) // 2
  return resized[top:top + size, left:left + size]


def prepared_builder(name: str, data_dir: str | None):
  """The tfds builder of `name`, or a ValueError if it is not prepared under `data_dir`."""
  import tensorflow_datasets as tfds  # noqa: PLC0415  (slow to import)
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise ValueError(
        f"tfds dataset '{name}' is not prepared in '{builder.data_dir_root}'; prepare it "
        f"there first (e.g. `tfds build {name} --data_dir=DIR` where the network or the "
        f"manual download is available) or pass the directory that holds it (--tfds_data_dir).")
  return builder


def examples(builder, split: str, decode_images: bool = True):
  """The examples of `split` in stored order, as numpy dicts (images left encoded when
  `decode_images` is False and the storage allows it)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    source = builder.as_data_source(split)
    return (source[i] for i in range(len(source)))
  decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
  dataset = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
  return iter(tfds.as_numpy(dataset))


def _in_memory(builder, split: str, size: int) -> eval_sets.Split:
  images, labels = [], []
  for example in examples(builder, split):
    images.append(fit_image(example["image"], size))
    labels.append(int(example["label"]))
  return eval_sets.Split(np.stack(images), np.asarray(labels, np.int32))


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load(spec: TfdsSpec, context: eval_sets.LoadContext) -> eval_sets.EvalSet:
  builder = prepared_builder(spec.tfds_name, context.tfds_data_dir)
  size = context.image_size
  n_test = builder.info.splits[spec.test_split].num_examples
  # One pass over the labels and captions without decoding images, then images on demand.
  labels, captions, caption_image = [], [], []
  for row, example in enumerate(examples(builder, spec.test_split, decode_images=False)):
    if spec.captions:
      texts = [_text(t) for t in example["captions"]["text"]]
      captions += texts
      caption_image += [row] * len(texts)
    else:
      labels.append(int(example["label"]))
  images = eval_sets.ImageStream(n_test, lambda: (
      fit_image(e["image"], size) for e in examples(builder, spec.test_split)))
  eval_set = eval_sets.EvalSet(
      name=spec.benchmark_name,
      test=eval_sets.Split(images, np.asarray(labels, np.int32) if labels else None))
  if spec.captions:
    eval_set.captions, eval_set.caption_image = captions, np.asarray(caption_image)
  if spec.classes:
    eval_set.classes = eval_sets.read_lines(spec.classes)
    eval_set.templates = eval_sets.read_lines(spec.templates)
    num_classes = builder.info.features["label"].num_classes
    if len(eval_set.classes) != num_classes:
      raise ValueError(f"the class name file '{spec.classes}' has {len(eval_set.classes)} "
                       f"names but tfds '{spec.tfds_name}' has {num_classes} classes; fix "
                       f"the file.")
  if spec.train_split and context.probes:
    n_train = builder.info.splits[spec.train_split].num_examples
    n_val = min(PROBE_VALIDATION, n_train // 5)
    n_fit = min(int(context.eval_cfg.linear_probe_examples), n_train - n_val)
    train = spec.train_split
    eval_set.fit = _in_memory(builder, f"{train}[:{n_fit}]", size)
    eval_set.validation = _in_memory(builder, f"{train}[{n_fit}:{n_fit + n_val}]", size)
  return eval_set


for _name, _spec in SPECS.items():
  eval_sets.register(_name, lambda name, context, spec=_spec: load(spec, context))
