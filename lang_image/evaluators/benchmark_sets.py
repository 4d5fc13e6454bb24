"""Labelled test sets given by config alone: zero-shot classification and retrieval.

Two layouts are read:

  CLIP_benchmark's webdataset layout, named by its folder (`config.eval.dataset=/data/mnist`
  or `wds:/data/mnist`):
      /data/mnist/classnames.txt                         one class name per line, label order
      /data/mnist/zeroshot_classification_templates.txt  prompts with {c} (optional)
      /data/mnist/test/0.tar, 1.tar, ...                 members KEY.cls (the integer label),
                                                         KEY.webp/png/jpg, KEY.txt (optional)
  (the split folder is config.eval.split); or shards named by a pattern
  (`wds:/data/mnist/test/{0..3}.tar`) with `classnames.txt` in their folder or the one above.

  A CSV or JSONL table (`csv:/data/test.csv`, `jsonl:/data/test.jsonl`) with an image path
  column (config.data.image_key, default filepath), a label column (config.eval.label_key,
  default label; an integer or a class name) and optionally a caption column
  (config.data.text_key, default title), with `classnames.txt` beside it.

config.eval.class_names and config.eval.templates name the two text files explicitly. Without
a template file the prompts are "a photo of a {}.". A sample without a caption is described by
its class's first prompt for retrieval. A source spec without class names anywhere is a
retrieval-only set (`source_sets`).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import tarfile

import numpy as np
from absl import logging

from lang_image.data import ops
from lang_image.data import preprocess as preprocess_lib
from lang_image.data.sources.base import BadSample
from lang_image.evaluators import eval_sets, source_sets

CLASSNAMES = "classnames.txt"
TEMPLATES = "zeroshot_classification_templates.txt"
DEFAULT_TEMPLATES = ["a photo of a {}."]
IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")
TABLE_KINDS = ("csv", "jsonl")


def _folder(name: str) -> str | None:
  """The folder of a CLIP_benchmark layout named by `name` (with or without wds:), or None."""
  path = os.path.expanduser(name[4:] if name.startswith("wds:") else name)
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, CLASSNAMES)):
    return path
  return None


def _beside(name: str) -> list[str]:
  """Folders where a source's class-names file may lie: beside its files, and one above."""
  scheme, _, rest = name.partition(":")
  first = os.path.expanduser(rest.split("::")[0].strip())
  here = os.path.dirname(os.path.abspath(first))
  return [here, os.path.dirname(here)] if scheme == "wds" else [here]


def _found(folders, file_name: str) -> str | None:
  return next((os.path.join(d, file_name) for d in folders
               if os.path.isfile(os.path.join(d, file_name))), None)


def matches(name: str) -> bool:
  return _folder(name) is not None or source_sets.is_source(name)


def read_templates(path: str | None) -> list[str]:
  """Prompt templates of a file, CLIP_benchmark's {c} written as {}; the default without one."""
  if not path:
    return list(DEFAULT_TEMPLATES)
  templates = [t.replace("{c}", "{}") for t in eval_sets.read_lines(path)]
  bad = [t for t in templates if t.count("{}") != 1]
  if bad:
    raise ValueError(f"template {bad[0]!r} in {path} has no single {{c}} (or {{}}) where the "
                     "class name goes; fix that line.")
  return templates


def load(name: str, context: eval_sets.LoadContext) -> eval_sets.EvalSet:
  cfg = context.eval_cfg
  folder = _folder(name)
  folders = [folder] if folder else _beside(name)
  class_file = cfg.get("class_names", "") or _found(folders, CLASSNAMES)
  if not class_file:
    return source_sets.load(name, context)  # No labels to name: retrieval only.
  classes = eval_sets.read_lines(class_file)
  templates = read_templates(cfg.get("templates", "") or _found(folders, TEMPLATES))
  limit = int(cfg.source_examples)
  if folder:
    split_dir = os.path.join(folder, cfg.split)
    shards = sorted(glob.glob(os.path.join(split_dir, "*.tar")))
    if not shards:
      raise ValueError(f"{split_dir} holds no .tar shard; CLIP_benchmark's layout keeps the "
                       f"'{cfg.split}' split's shards there (or set config.eval.split).")
    raw = _wds_samples(shards, limit)
  elif name.split(":", 1)[0] == "wds":
    from lang_image.data.sources import webdataset
    raw = _wds_samples(webdataset.expand_patterns(name.partition(":")[2]), limit)
  elif name.split(":", 1)[0] in TABLE_KINDS:
    raw = _table_samples(name, context, limit)
  else:
    return source_sets.load(name, context)
  # Named as CLIP_benchmark names its datasets: by the folder ('digits'), else by the spec.
  title = os.path.basename(os.path.normpath(folder)) if folder else name
  return _eval_set(title, raw, classes, templates, context.image_size)


def _label(value, classes, where: str) -> int:
  text = value.decode("utf-8").strip() if isinstance(value, bytes) else str(value).strip()
  if text in classes:
    return classes.index(text)
  try:
    label = int(text)
  except ValueError:
    raise ValueError(f"label {text!r} of {where} is neither an integer nor one of the "
                     f"{len(classes)} class names; fix the data or the class-names file.") from None
  if not 0 <= label < len(classes):
    raise ValueError(f"label {label} of {where} is outside the {len(classes)} classes of the "
                     "class-names file; give one name per label, in label order.")
  return label


def _wds_samples(shards, limit: int) -> list[dict]:
  """The first `limit` samples with an image and a cls member, in shard order:
  [{"image": bytes, "label": bytes, "caption": str | None, "where": str}]."""
  samples = []
  for shard in shards:
    members = {}
    with tarfile.open(shard) as tar:
      for member in tar:
        if not member.isfile():
          continue
        base = os.path.basename(member.name)
        key = os.path.join(os.path.dirname(member.name), base.split(".", 1)[0])
        ext = base.split(".", 1)[1].lower() if "." in base else ""
        members.setdefault(key, {})[ext] = tar.extractfile(member).read()
    for key, parts in members.items():
      image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
      if image is None or "cls" not in parts:
        continue
      caption = parts["txt"].decode("utf-8").strip() if "txt" in parts else None
      samples.append({"image": image, "label": parts["cls"], "caption": caption,
                      "where": f"{shard}/{key}"})
      if len(samples) >= limit:
        return samples
  return samples


def _table_samples(name: str, context, limit: int) -> list[dict]:
  scheme, _, path = name.partition(":")
  path = os.path.expanduser(path.strip())
  data_cfg = getattr(context.dataset, "data_cfg", None)
  image_key = (data_cfg.image_key if data_cfg is not None else "") or "filepath"
  text_key = (data_cfg.text_key if data_cfg is not None else "") or "title"
  label_key = context.eval_cfg.get("label_key", "") or "label"
  separator = data_cfg.csv_separator if data_cfg is not None else ","
  with open(path, encoding="utf-8") as f:
    if scheme == "csv":
      rows = list(csv.DictReader(f, delimiter=separator))
    else:
      rows = [json.loads(line) for line in f if line.strip()]
  if rows and label_key not in rows[0]:
    raise ValueError(f"{path} has no label column {label_key!r} (it has {sorted(rows[0])}); "
                     "name it with --config.eval.label_key.")
  folder = os.path.dirname(os.path.abspath(path))
  samples = []
  for i, row in enumerate(rows[:limit]):
    image_path = os.path.join(folder, str(row.get(image_key, "")))
    if not os.path.isfile(image_path):
      raise ValueError(f"row {i} of {path}: image {image_path} does not exist; check the "
                       f"{image_key!r} column (config.data.image_key).")
    with open(image_path, "rb") as f:
      image = f.read()
    caption = row.get(text_key)
    samples.append({"image": image, "label": row[label_key],
                    "caption": str(caption) if caption else None, "where": f"row {i} of {path}"})
  return samples


def _eval_set(name, raw, classes, templates, image_size) -> eval_sets.EvalSet:
  preprocess = preprocess_lib.Preprocess(source_sets.EVAL_PP, ops.Context(image_size=image_size))
  rng = np.random.default_rng(0)
  images, labels, captions = [], [], []
  skipped = 0
  for sample in raw:
    label = _label(sample["label"], classes, sample["where"])
    try:
      image = preprocess({"image": sample["image"], "caption": ""}, rng)["image"]
    except BadSample:
      skipped += 1
      continue
    images.append(image)
    labels.append(label)
    captions.append(sample["caption"] or templates[0].format(classes[label]))
  if not images:
    raise ValueError(f"eval set '{name}' has no labelled sample with a readable image; check "
                     "that its samples hold an image and a label.")
  if skipped:
    logging.warning("Eval set %s: skipped %d samples whose image does not decode.", name, skipped)
  logging.info("Eval set %s: %d labelled images, %d classes, %d prompt templates.", name,
               len(images), len(classes), len(templates))
  return eval_sets.EvalSet(name=name, test=eval_sets.Split(np.stack(images), np.asarray(labels)),
                           classes=classes, templates=templates, captions=captions,
                           caption_image=np.arange(len(images)))


# First: it takes every source spec, and hands those without class names to source_sets.
eval_sets.register_family(matches, load, "labelled sets in CLIP_benchmark's webdataset layout "
                          "(/data/mnist with classnames.txt) or csv:/jsonl: with a label column",
                          first=True)
