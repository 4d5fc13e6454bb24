"""`shapes`: the embedded dataset's eval split as an eval set.

Zero-shot on its classes (with `seen` / `unseen` subsets: the held-out colour-shape pairs),
retrieval on its captions (`config.eval.captions_per_image` per image), and probes fitted on
single-object train images (their label names their one object), tuned on the validation
split.
"""

from __future__ import annotations

import numpy as np

from lang_image.data import shapes
from lang_image.evaluators.eval_sets import EvalSet, Split, register


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


register("shapes", lambda name, c: embedded(c.dataset, c.eval_cfg, c.probes))
