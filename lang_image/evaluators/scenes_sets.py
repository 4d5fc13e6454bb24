"""`scenes`: the multi-object benchmark's eval split (lang_image/data/scenes.py) as an eval set.

Reported per label set (`zero_shot/<label set>/top1`, ...):
- zero-shot, easy to hard: colour (8 classes), shape (6), count (4, on every image),
  colour_shape (48), full (size, colour and shape: 96); the attribute label sets on
  the single-object images. colour_shape and full also report `top1_seen` / `top1_unseen`:
  images of the held-out compositions, never seen in training.
- linear probe and k-NN on texture and size, which the captions rarely mention, and on
  shape: fitted on up to config.eval.linear_probe_examples single-object train images,
  tuned on the validation split, scored on the single-object test images.
- image->text and text->image retrieval on every test image with its stored caption
  (plus config.eval.captions_per_image - 1 more of the same scene).
"""

from __future__ import annotations

import numpy as np

from lang_image.data import pipeline, scenes
from lang_image.data.sources import scenes_source
from lang_image.evaluators.eval_sets import EvalSet, LabelSet, Split, register

NAME = "scenes"
ZERO_SHOT = ("colour", "shape", "count", "colour_shape", "full")
# Probes on the rarely captioned attributes, and on shape (captioned, but invisible to the
# untrained towers' features, unlike colour and size: what training has taught the towers).
PROBES = ("texture", "size", "shape")
# Without "a"/"an" in front of the class name ("a orange ..."); the captions use these forms.
TEMPLATES = {
    "object": ("a photo of one {}.", "one {}.", "a picture of the {}.", "there is one {}.",
               "an image of one {}.", "the {} on a plain background."),
    "colour": ("a photo of one {} shape.", "one {} object.", "a picture of the {} shape.",
               "there is one {} thing.", "an image of one {} shape."),
    "count": ("{}.", "a picture of {}.", "an image of {}.", "{} on a plain background.",
              "simple shapes: {}."),
}
_TEMPLATE_OF = {"colour": "colour", "count": "count"}


def _read(source, limit=None, single_object=False) -> dict:
  rows = {name: [] for name in ("image", "caption", "index", *scenes.STORED_LABELS)}
  for i in range(len(source)):
    example = source[i]
    if single_object and int(example["count"]) != 0:
      continue
    rows["image"].append(np.asarray(example["image"], np.uint8))
    rows["index"].append(i)
    caption = example["caption"]
    rows["caption"].append(caption.decode("utf-8") if isinstance(caption, bytes) else caption)
    for name in scenes.STORED_LABELS:
      rows[name].append(int(example[name]))
    if limit is not None and len(rows["image"]) >= limit:
      break
  return {k: (np.stack(v) if k == "image" else v if k == "caption" else np.asarray(v))
          for k, v in rows.items()}


def _held_out_subsets(label_set: str, labels: np.ndarray) -> dict:
  unseen = scenes.held_out_classes(label_set)[np.maximum(labels, 0)] & (labels >= 0)
  return {"seen": (labels >= 0) & ~unseen, "unseen": unseen}


def load(name: str, context) -> EvalSet:
  """The eval split (config.eval.split) of the scenes data of the run's data config."""
  del name
  eval_cfg = context.eval_cfg
  builder = scenes_source.prepared_builder(pipeline.source_options(context.dataset.data_cfg))
  split = eval_cfg.split
  test = _read(builder.as_data_source(split))
  per_image = int(eval_cfg.captions_per_image)
  if per_image < 1:
    raise ValueError(f"config.eval.captions_per_image must be at least 1, got {per_image}.")
  captions, caption_image = [], []
  for row, (index, caption) in enumerate(zip(test["index"], test["caption"])):
    extra = scenes.captions(split, int(index), per_image)[1:] if per_image > 1 else []
    captions += [caption, *extra]
    caption_image += [row] * per_image
  label_sets = {}
  for label_set in ZERO_SHOT:
    subsets = (_held_out_subsets(label_set, test[label_set])
               if label_set in ("colour_shape", "full") else {})
    templates = TEMPLATES[_TEMPLATE_OF.get(label_set, "object")]
    label_sets[label_set] = LabelSet(classes=scenes.LABEL_SETS[label_set], test=test[label_set],
                                     templates=list(templates), subsets=subsets)
  eval_set = EvalSet(name=NAME, test=Split(test["image"]), captions=captions,
                     caption_image=np.asarray(caption_image), label_sets=label_sets)
  if context.probes:
    fit = _read(builder.as_data_source("train"), limit=eval_cfg.linear_probe_examples,
                single_object=True)
    val = _read(builder.as_data_source("validation"), single_object=True)
    eval_set.fit, eval_set.validation = Split(fit["image"]), Split(val["image"])
    for label_set in PROBES:
      if label_set in label_sets:  # zero-shot and probed
        label_sets[label_set].fit, label_sets[label_set].validation = fit[label_set], val[label_set]
      else:
        label_sets[label_set] = LabelSet(classes=scenes.LABEL_SETS[label_set],
                                         test=test[label_set], fit=fit[label_set],
                                         validation=val[label_set])
  return eval_set


register(NAME, load)
