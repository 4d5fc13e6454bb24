"""Labelled image-text test sets as CLIP_benchmark lays them out, and as CSV / JSONL tables.

Class k's images are a square of colour COLOURS[k] on grey noise; captions say so
("a photo of a red square, number 7"). `write_benchmark` writes
    DIR/classnames.txt, DIR/zeroshot_classification_templates.txt,
    DIR/<split>/<i>.tar (members KEY.webp or KEY.png, KEY.cls, KEY.txt)
and `write_table` a CSV or JSONL file with filepath, label and title columns plus
classnames.txt beside it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210),
           "yellow": (230, 210, 40)}
CLASSES = [f"{c} square" for c in COLOURS]
TEMPLATES = ['a photo of a {c}.', 'a picture of the "{c}".']


def pixels(label: int, i: int, size: int = 48) -> np.ndarray:
  rng = np.random.default_rng(1000 * label + i)
  image = rng.integers(90, 160, size=(size, size, 3)).astype(np.uint8)
  side = int(rng.integers(size // 3, size // 2))
  y, x = rng.integers(0, size - side, size=2)
  image[y:y + side, x:x + side] = list(COLOURS.values())[label]
  return image


def encode(array: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


def label_of(i: int) -> int:
  return i % len(CLASSES)


def caption(i: int) -> str:
  return f"a photo of a {CLASSES[label_of(i)]}, number {i}"


def _add(tar, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_shards(directory: str, n: int, shards: int, offset: int = 0,
                 with_labels: bool = True) -> list[str]:
  """n samples over `shards` tar files 0.tar, 1.tar, ... in `directory`."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for s in range(shards):
    path = os.path.join(directory, f"{s}.tar")
    with tarfile.open(path, "w") as tar:
      for i in range(s, n, shards):
        key = f"{offset + i:06d}"
        fmt, ext = ("WEBP", "webp") if i % 2 else ("PNG", "png")
        _add(tar, f"{key}.{ext}", encode(pixels(label_of(i), offset + i), fmt))
        if with_labels:
          _add(tar, f"{key}.cls", str(label_of(i)).encode())
        _add(tar, f"{key}.txt", caption(i).encode())
    paths.append(path)
  return paths


def write_benchmark(directory: str, train: int = 96, test: int = 40, shards: int = 2) -> str:
  """CLIP_benchmark's layout (module docstring) with a train and a test split; returns DIR."""
  write_shards(os.path.join(directory, "train"), train, shards, offset=0)
  write_shards(os.path.join(directory, "test"), test, shards, offset=100_000)
  with open(os.path.join(directory, "classnames.txt"), "w") as f:
    f.write("\n".join(CLASSES) + "\n")
  with open(os.path.join(directory, "zeroshot_classification_templates.txt"), "w") as f:
    f.write("\n".join(TEMPLATES) + "\n")
  return directory


def write_table(directory: str, kind: str = "csv", n: int = 20, names: bool = False) -> str:
  """A labelled CSV or JSONL table (labels as integers, or as class names with `names`)
  and classnames.txt beside it; returns the source spec."""
  os.makedirs(os.path.join(directory, "images"), exist_ok=True)
  rows = []
  for i in range(n):
    path = os.path.join("images", f"{i}.png")
    with open(os.path.join(directory, path), "wb") as f:
      f.write(encode(pixels(label_of(i), i), "PNG"))
    label = CLASSES[label_of(i)] if names else label_of(i)
    rows.append({"filepath": path, "label": label, "title": caption(i)})
  table = os.path.join(directory, f"test.{kind}")
  with open(table, "w", newline="") as f:
    if kind == "csv":
      writer = csv.DictWriter(f, fieldnames=["filepath", "label", "title"])
      writer.writeheader()
      writer.writerows(rows)
    else:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  with open(os.path.join(directory, "classnames.txt"), "w") as f:
    f.write("\n".join(CLASSES) + "\n")
  return f"{kind}:{table}"
