"""Small image-text data sets in every source format, with faults planted at known samples.

Each `write_*` returns a `Planted`: the source spec, the sample count, which samples are
faulty and why, and the caption of every good sample. Images are JPEG, PNG or WEBP of varied
sizes and aspect ratios (noise plus a coloured rectangle), each caption is unique ("a red
square number 17"). `faults=False` writes clean data; `image_size` (a side length, or a
(min, max) range) makes larger images and `formats` picks the encodings, e.g. for benchmarks:
write_wds(d, 64, 100, image_size=(256, 500), faults=False, formats=("jpg",)).

Faults that only decoding finds (image_unreadable: a truncated JPEG, a member or file that
is not an image) are listed in `reasons` like the others: the source returns their bytes,
and the decode step rejects them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210),
           "yellow": (230, 210, 40), "purple": (140, 50, 170), "orange": (240, 140, 30)}
SHAPES = ("square", "rectangle", "bar", "block")
# Sample i is stored in formats[i % len(formats)] (the `formats` argument, by extension).
FORMATS = ("jpg", "png", "webp")
PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
NOT_AN_IMAGE = b"this member holds text, not an image\n"


@dataclasses.dataclass
class Planted:
  """What a written data set holds, in the source's sample numbering."""
  spec: str
  n: int
  # reason -> number of planted faults.
  counts: dict
  # sample index -> planted reason.
  reasons: dict
  # The caption of each sample (a list for a sample with several), None for faulty ones.
  captions: list
  # The files written (shards, the table, ...).
  files: list = dataclasses.field(default_factory=list)
  # tfds data directory (tfds: sources only).
  data_dir: str | None = None

  @property
  def bad(self) -> set:
    return set(self.reasons)


def caption(i: int) -> str:
  rng = np.random.default_rng(i)
  colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
  return f"a {colour} {SHAPES[int(rng.integers(len(SHAPES)))]} number {i}"


def image(i: int, ext: str = "jpg", image_size=(40, 96)) -> bytes:
  """Image i encoded as `ext`: noise plus a rectangle of caption(i)'s colour."""
  return encode(pixels(i, image_size), ext)


def pixels(i: int, image_size=(40, 96)) -> np.ndarray:
  low, high = (image_size, image_size) if isinstance(image_size, int) else image_size
  rng = np.random.default_rng(1000 + i)
  h, w = (int(v) for v in rng.integers(low, high + 1, size=2))
  array = rng.integers(0, 256, (h, w, 3)).astype(np.uint8) // 4 + 160
  colour = COLOURS[caption(i).split()[1]]
  y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
  array[y0:y0 + h // 2, x0:x0 + w // 2] = colour
  return array


def encode(array: np.ndarray, ext: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, PIL_FORMATS[ext], quality=90)
  return buffer.getvalue()


def _fault_positions(n: int, reasons) -> dict:
  """Spreads the faults evenly over n samples, never at sample 0."""
  assert n >= 2 * len(reasons), f"{n} samples are too few for {len(reasons)} faults"
  return {(k + 1) * n // (len(reasons) + 1): r for k, r in enumerate(reasons)}


def _planted(spec, n, reasons, captions, **kwargs) -> Planted:
  counts = {}
  for r in reasons.values():
    counts[r] = counts.get(r, 0) + 1
  return Planted(spec, n, counts, dict(reasons),
                 [None if i in reasons else c for i, c in enumerate(captions)], **kwargs)


# The webdataset faults, in the order they are spread over the samples.
WDS_FAULTS = ("image_unreadable/truncated", "image_unreadable/not_an_image", "caption_missing",
              "caption_empty", "caption_not_utf8", "json_invalid", "image_missing")


def write_wds(directory: str, shards: int = 4, per_shard: int = 12, *, image_size=(40, 96),
              faults: bool = True, formats=FORMATS) -> Planted:
  """Shards 00000.tar ... of img2dataset's layout: KEY.jpg|png|webp, KEY.txt, KEY.json."""
  os.makedirs(directory, exist_ok=True)
  n = shards * per_shard
  planted = _fault_positions(n, WDS_FAULTS) if faults else {}
  files = []
  for s in range(shards):
    path = os.path.join(directory, f"{s:05d}.tar")
    files.append(path)
    with tarfile.open(path, "w") as tar:
      for j in range(per_shard):
        i = s * per_shard + j
        key = f"{s:05d}{j:04d}"
        ext = formats[i % len(formats)]
        fault = planted.get(i, "")
        data = image(i, ext, image_size)
        meta = {"caption": caption(i), "key": key, "index": i}
        members = {ext: data, "txt": caption(i).encode(), "json": json.dumps(meta).encode()}
        if fault == "image_unreadable/truncated":
          members = {"jpg": image(i, "jpg", image_size)[:300], "txt": members["txt"],
                     "json": members["json"]}
        elif fault == "image_unreadable/not_an_image":
          members[ext] = NOT_AN_IMAGE
        elif fault == "caption_missing":
          del members["txt"]
        elif fault == "caption_empty":
          members["txt"] = b"  \n"
        elif fault == "caption_not_utf8":
          members["txt"] = f"caf\xe9 {caption(i)}".encode("latin-1")
        elif fault == "json_invalid":
          members["json"] = b'{"caption": "unterminated'
        elif fault == "image_missing":
          del members[ext]
        for member_ext, payload in members.items():
          info = tarfile.TarInfo(f"{key}.{member_ext}")
          info.size = len(payload)
          info.mtime = 1_700_000_000
          tar.addfile(info, io.BytesIO(payload))
  reasons = {i: r.partition("/")[0] for i, r in planted.items()}
  spec = f"wds:{directory}/{{00000..{shards - 1:05d}}}.tar"
  return _planted(spec, n, reasons, [caption(i) for i in range(n)], files=files)


def _write_images(directory: str, n: int, planted: dict, image_size, formats) -> list:
  """Image files under directory/images/; returns each sample's path relative to directory.
  Faults: image_missing (the path names no file), image_unreadable (a corrupt file)."""
  os.makedirs(os.path.join(directory, "images"), exist_ok=True)
  paths = []
  for i in range(n):
    ext = formats[i % len(formats)]
    rel = os.path.join("images", f"{i:05d}.{ext}")
    fault = planted.get(i, "")
    if fault == "image_missing":
      rel = os.path.join("images", f"missing_{i:05d}.{ext}")
    else:
      data = image(i, ext, image_size)
      if fault == "image_unreadable":
        data = data[: len(data) // 3]
      with open(os.path.join(directory, rel), "wb") as f:
        f.write(data)
    paths.append(rel)
  return paths


TABLE_FAULTS = ("image_missing", "image_unreadable", "caption_empty", "caption_not_utf8")
JSONL_FAULTS = TABLE_FAULTS + ("json_invalid", "caption_missing")


def quoted_caption(i: int, separator: str) -> str:
  """A caption that needs CSV quoting: the separator, a quote and a newline."""
  return f'{caption(i)}{separator} said "the label"\nand then more'


def write_csv(directory: str, n: int = 40, separator: str = ",", *, image_size=(40, 96),
              faults: bool = True, formats=FORMATS, quoted: int = 5) -> Planted:
  """train.csv with columns id, filepath, title (relative image paths). Sample `quoted` has
  a caption that needs quoting."""
  planted = _fault_positions(n, TABLE_FAULTS) if faults else {}
  paths = _write_images(directory, n, planted, image_size, formats)
  captions = [quoted_caption(i, separator) if i == quoted else caption(i) for i in range(n)]
  text = io.StringIO(newline="")
  writer = csv.writer(text, delimiter=separator)
  writer.writerow(["id", "filepath", "title"])
  for i in range(n):
    title = captions[i]
    if planted.get(i) == "caption_empty":
      title = " "
    elif planted.get(i) == "caption_not_utf8":
      title = f"caf\udce9 {caption(i)}"  # Written as the single byte 0xe9.
    writer.writerow([i, paths[i], title])
  path = os.path.join(directory, "train.csv")
  with open(path, "wb") as f:
    f.write(text.getvalue().encode("utf-8", "surrogateescape"))
  return _planted(f"csv:{path}", n, planted, captions, files=[path])


def write_jsonl(directory: str, n: int = 40, *, image_size=(40, 96), faults: bool = True,
                formats=FORMATS, several: int = 7) -> Planted:
  """train.jsonl with objects {"filepath", "title", "id"}, blank lines between some. Sample
  `several` has a list of two captions."""
  planted = _fault_positions(n, JSONL_FAULTS) if faults else {}
  paths = _write_images(directory, n, planted, image_size, formats)
  captions = [caption(i) for i in range(n)]
  captions[several] = [caption(several), f"another view of {caption(several)}"]
  lines = []
  for i in range(n):
    obj = {"id": i, "filepath": paths[i], "title": captions[i]}
    fault = planted.get(i)
    if fault == "caption_empty":
      obj["title"] = ""
    elif fault == "caption_missing":
      del obj["title"]
    line = json.dumps(obj).encode()
    if fault == "caption_not_utf8":
      line = line.replace(b"number", b"caf\xe9 number")
    elif fault == "json_invalid":
      line = line[:-5]
    lines.append(line + b"\n")
    if i % 9 == 4:
      lines.append(b"\n" if i % 2 else b"   \r\n")
  path = os.path.join(directory, "train.jsonl")
  with open(path, "wb") as f:
    f.write(b"".join(lines))
  return _planted(f"jsonl:{path}", n, planted, captions, files=[path])


TFDS_NAME = "planted_pairs"
TFDS_FAULTS = ("image_unreadable", "caption_empty")
_tfds_builder = None


def _builder_class():
  """The tfds builder, defined on first use (tensorflow_datasets is slow to import, and a
  builder class registers its name once per process)."""
  global _tfds_builder
  if _tfds_builder is not None:
    return _tfds_builder
  import tensorflow_datasets as tfds

  class PlantedPairs(tfds.core.GeneratorBasedBuilder):
    """Image-caption pairs with planted faults.

    Features: "image" (encoded; tfds.features.Image stores bytes as given, so a corrupt
    image is kept as is), "pixels" (the same image decoded, a uint8 tensor), "caption" (text),
    "captions": {"text": [two captions]} (nested, coco_captions' layout).
    """

    name = TFDS_NAME
    VERSION = tfds.core.Version("1.0.0")
    # Set by write_tfds before each generation.
    n, planted, image_size, formats = 0, {}, (40, 96), FORMATS

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(None, None, 3)),
              "pixels": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                              encoding="zlib"),
              "caption": tfds.features.Text(),
              "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
          }),
          disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i in range(self.n):
        fault = self.planted.get(i)
        array = pixels(i, self.image_size)
        data = encode(array, self.formats[i % len(self.formats)])
        text = caption(i)
        if fault == "image_unreadable":
          data = NOT_AN_IMAGE
        if fault == "caption_empty":
          text = ""
        others = [text, f"another view of {text}" if text else " "]
        yield i, {"image": data, "pixels": array, "caption": text,
                  "captions": {"text": others}}

  _tfds_builder = PlantedPairs
  return PlantedPairs


def write_tfds(directory: str, n: int = 30, file_format: str = "array_record", *,
               image_size=(40, 96), faults: bool = True, formats=FORMATS) -> Planted:
  """The tfds dataset `planted_pairs` (split 'train') prepared under `directory` in
  `file_format` ('array_record' or 'tfrecord')."""
  import tensorflow_datasets as tfds
  cls = _builder_class()
  cls.n, cls.image_size, cls.formats = n, image_size, tuple(formats)
  cls.planted = _fault_positions(n, TFDS_FAULTS) if faults else {}
  builder = cls(data_dir=directory, file_format=file_format)
  bars = tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access
  tfds.disable_progress_bar()
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # tfds prints its progress.
      builder.download_and_prepare(
          file_format=file_format,
          download_config=tfds.download.DownloadConfig(
              try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  finally:
    tfds.display_progress_bar(bars)
  files = sorted(os.path.join(root, f) for root, _, names in os.walk(directory)
                 for f in names if file_format in f)
  return _planted(f"tfds:{TFDS_NAME}:train", n, cls.planted, [caption(i) for i in range(n)],
                  files=files, data_dir=directory)
