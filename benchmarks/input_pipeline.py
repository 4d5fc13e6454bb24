"""Input pipeline throughput against the training step's consumption rate, on this machine.

    python benchmarks/input_pipeline.py [--kinds=wds,csv,jsonl,tfds] [--threads=1,2,DEFAULT]
                                        [--batches=6] [--rounds=5] [--data_dir=DIR]
                                        [--prefetch=N] [--devices=1] [--candidates]
                                        [--json] [--quick]

1. The training stream (`stream.TrainStream`) over generated data of each source kind
   (webdataset shards, CSV, JSONL, tfds array_record), preprocessing at 224 px with
   decode|random_resized_crop(224, scale=(0.9, 1.0))|flip_lr|choose_caption|tokenize:
   pairs/s of `next_local()` (host numpy batches) for each reader thread count
   (config.data.threads), and of `next()`, which adds the transfer to the devices
   (`jax.make_array_from_process_local_data`), at the default thread count. A kind's
   variants are timed in alternating rounds, so that load from other processes falls on all
   of them alike; each figure is the median over rounds.
2. The consumption rate of the benchmark model's train step (`trainer.Trainer`, CLIP, float32,
   batch 64, one CPU device): ViT w256-d6-h4-mlp1024 with 8 px patches at 64 px, text tower
   w256-d6-h4-mlp1024 over 32 tokens. The step is timed alone, before and after the
   pipelines run; pairs/s = 64 / median step time. It is timed once more while the wds
   pipeline prepares one batch alongside each step, as in `train.run`.
3. One table: pairs/s of each pipeline, its ratio to the model's rate, and for wds and csv
   whether it meets the target ratio of 2. Then a profile of one thread's work per sample
   (source read, each op, stacking, the stream's own cost) next to cheaper alternatives;
   `--candidates` also times the wds stream with those alternatives applied.

Data: images are JPEGs of 256-512 px a side (tests/data_fixtures.py), generated into a
temporary directory, or into --data_dir and reused by later runs. One SentencePiece model,
trained on their captions, tokenizes every kind. The model trains at 64 px while the
pipeline produces 224 px images, the resolution of real runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

START = time.perf_counter()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("wds", "csv", "jsonl", "tfds")
TARGET_KINDS = ("wds", "csv")
TARGET_RATIO = 2.0
BATCH = 64
IMAGE_SIZE = (256, 512)
CROP = 224
PP = (f"decode|random_resized_crop({CROP}, scale=(0.9, 1.0))|flip_lr|choose_caption|"
      "tokenize")
MODEL = dict(image="w256-d6-h4-mlp1024/8", text="w256-d6-h4-mlp1024", image_size=64,
             max_len=32, embed_dim=256, image_stem="patch", image_pool="cls", dtype="float32")


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kinds", default=",".join(KINDS))
  parser.add_argument("--threads", default="",
                      help="reader thread counts; default 1, 2 and the config's default")
  parser.add_argument("--prefetch", type=int, default=0,
                      help="config.data.prefetch; 0 keeps the config's default")
  parser.add_argument("--batches", type=int, default=6, help="timed batches per round")
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds per pipeline")
  parser.add_argument("--warmup", type=int, default=2, help="batches before timing")
  parser.add_argument("--samples", type=int, default=1024, help="samples per source kind")
  parser.add_argument("--model_steps", type=int, default=8,
                      help="timed steps, before and again after the pipelines")
  parser.add_argument("--profile_samples", type=int, default=300)
  parser.add_argument("--devices", type=int, default=1,
                      help="simulated CPU devices that next() transfers to")
  parser.add_argument("--candidates", action="store_true",
                      help="also time the wds stream with the profile's alternatives")
  parser.add_argument("--data_dir", default="", help="keep (and reuse) the data here")
  parser.add_argument("--json", action="store_true", help="print the results as JSON")
  parser.add_argument("--quick", action="store_true", help="a short smoke run")
  args = parser.parse_args()
  if args.quick:
    args.batches, args.rounds, args.warmup, args.model_steps = 2, 1, 1, 1
    args.samples, args.profile_samples = min(args.samples, 128), 32
  return args


ARGS = parse_args()
if ARGS.devices > 1:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, ROOT)  # configs/, and this checkout's lang_image
sys.path.insert(0, os.path.join(ROOT, "tests"))  # data_fixtures

import jax  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402
from PIL import Image  # noqa: E402

import data_fixtures  # noqa: E402
from lang_image import config as config_lib, parallel  # noqa: E402
from lang_image.data import ops, pipeline, stream as stream_lib  # noqa: E402
from lang_image.data import preprocess as preprocess_lib  # noqa: E402
from lang_image.data import tokenizer as tokenizer_lib  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402


def log(message: str) -> None:
  print(f"[{time.perf_counter() - START:5.1f}s] {message}", file=sys.stderr, flush=True)


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def version(package: str) -> str:
  from importlib import metadata
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return "?"


# Data.

def write_data(directory: str, kinds, n: int) -> dict:
  """Generates each kind's data (or reuses what an earlier run wrote) -> manifest."""
  path = os.path.join(directory, "manifest.json")
  if os.path.exists(path):
    with open(path) as f:
      manifest = json.load(f)
    if manifest.get("samples") == n and set(kinds) <= set(manifest["specs"]):
      log(f"reusing the data in {directory}")
      return manifest
  common = dict(image_size=IMAGE_SIZE, faults=False, formats=("jpg",))
  writers = {
      "wds": lambda d: data_fixtures.write_wds(d, 8, n // 8, **common),
      "csv": lambda d: data_fixtures.write_csv(d, n, **common),
      "jsonl": lambda d: data_fixtures.write_jsonl(d, n, **common),
      "tfds": lambda d: data_fixtures.write_tfds(d, n, "array_record", **common),
  }
  specs, captions = {}, []
  for kind in kinds:
    planted, seconds = timed(writers[kind], os.path.join(directory, kind))
    specs[kind] = planted.spec
    captions += [c for c in planted.captions if isinstance(c, str)]
    log(f"wrote {planted.n} {kind} samples in {seconds:.1f}s")
  tokenizer = os.path.join(directory, "tokenizer.model")
  tokenizer_lib.train_sentencepiece(sorted(set(captions)), tokenizer, vocab_size=32000)
  manifest = {"samples": n, "specs": specs, "tokenizer": tokenizer,
              "tfds_data_dir": os.path.join(directory, "tfds")}
  with open(path, "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def data_config(manifest: dict, kind: str, data_dir: str) -> ConfigDict:
  """configs/clip.py's data config for this source, with the benchmark's preprocessing."""
  config = config_lib.load_config_file(f"configs/clip.py:data={manifest['specs'][kind]}")
  config.data.update(pp=PP, tokenizer=manifest["tokenizer"], data_dir=data_dir,
                     tfds_data_dir=manifest["tfds_data_dir"])
  if ARGS.prefetch:
    config.data.prefetch = ARGS.prefetch
  return config.data


# The input pipeline.

class Timed:
  """One warmed-up training stream, timed round by round."""

  def __init__(self, dataset, threads: int, sharding, transfer: bool, **data_overrides):
    cfg = ConfigDict(dataset.data_cfg.to_dict())
    cfg.update(threads=threads, **data_overrides)
    self.stream = stream_lib.TrainStream(dataset, cfg, BATCH, sharding, seed=0,
                                         process_index=0, process_count=1)
    self.get = ((lambda: jax.block_until_ready(next(self.stream))) if transfer
                else self.stream.next_local)
    self.rates = []
    for _ in range(ARGS.warmup):
      self.get()

  def round(self) -> None:
    _, seconds = timed(lambda: [self.get() for _ in range(ARGS.batches)])
    self.rates.append(ARGS.batches * BATCH / seconds)

  def close(self) -> None:
    # Stops the reader threads' prefetching (TrainStream keeps its iterator private).
    close = getattr(getattr(self.stream, "_iter", None), "close", None)
    if close:
      close()


def interleaved(variants: list[Timed]) -> list[list[float]]:
  """pairs/s of each round of each variant, the variants taking turns."""
  for _ in range(ARGS.rounds):
    for variant in variants:
      variant.round()
  for variant in variants:
    variant.close()
  return [variant.rates for variant in variants]


class EachTextTokenizer:
  """A SentencePiece tokenizer's `encode` with one call per text, given as a str: a list
  argument makes sentencepiece start worker threads on every call."""

  def __init__(self, tokenizer):
    self._tok = tokenizer

  def __getattr__(self, name):
    return getattr(self._tok, name)

  def encode(self, texts, max_len: int) -> np.ndarray:
    texts = [texts] if isinstance(texts, str) else texts
    out = np.full((len(texts), max_len), self._tok.pad_id, np.int32)
    for row, text in zip(out, texts):
      ids = self._tok._sp.encode(text, out_type=int)[:max_len - 1]
      row[:len(ids)] = ids
      row[len(ids)] = self._tok.eos_id
    return out


# The model.

class ModelStep:
  """The benchmark model's train step on one CPU device, on a fixed random batch."""

  def __init__(self, vocab_size: int):
    config = config_lib.load_config_file(f"configs/clip.py:batch={BATCH}")
    config.model.update(MODEL)
    config.mesh.update(data=1, fsdp=1)
    config_lib.validate(config, None, device_count=1)
    self.mesh = parallel.make_mesh(config.mesh, devices=jax.devices()[:1])
    self.trainer = Trainer(config, self.mesh, vocab_size)
    self.state = self.trainer.init_state(config.seed)
    rng = np.random.default_rng(0)
    size, length = config.model.image_size, config.model.max_len
    text = rng.integers(3, vocab_size, (BATCH, length), dtype=np.int32)
    text[:, -1] = tokenizer_lib.EOS_ID
    local = {"image": rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8),
             "text": text}
    self.batch = stream_lib.to_global(local, self.trainer.batch_sharding)

  def times(self, steps: int, alongside=None) -> list[float]:
    """Seconds of each step; with `alongside`, that function runs (for one batch of the
    pipeline) while the step computes, as in `train.run`, where dispatch is asynchronous."""
    out = []
    with jax.set_mesh(self.mesh):
      for _ in range(steps):
        start = time.perf_counter()
        self.state, metrics = self.trainer.train_step(self.state, self.batch)
        if alongside:
          alongside()
        jax.block_until_ready(metrics)
        out.append(time.perf_counter() - start)
    return out


# The profile of one thread's work.

def mean_us(fn, items, repeats: int = 3) -> float:
  """Median over repeats of the mean microseconds of fn(item) over items."""
  means = []
  for _ in range(repeats):
    start = time.perf_counter()
    for item in items:
      fn(item)
    means.append((time.perf_counter() - start) / len(items) * 1e6)
  return statistics.median(means)


def decode_no_copy(data: bytes, draft: int | None) -> Image.Image:
  """`ops._decode_bytes` without the copy that convert('RGB') makes of an RGB image."""
  image = Image.open(io.BytesIO(data))
  if draft and image.format == "JPEG":
    image.draft("RGB", (draft, draft))
  if image.mode != "RGB":
    image = image.convert("RGB")
  image.load()
  return image


def profile(dataset, sources: dict, n: int) -> dict:
  """Mean microseconds per sample of each stage on one thread, without grain; and of the
  alternatives."""
  pre = dataset.preprocess
  source = sources["wds"] if "wds" in sources else next(iter(sources.values()))
  indices = list(range(min(n, len(source))))
  out = {"samples": len(indices), "read_us": {}}
  for kind, src in sources.items():
    out["read_us"][kind] = mean_us(lambda i, src=src: src[i], indices)

  # Each op on the inputs it sees in the stream (each op's inputs made once, up front).
  rng = np.random.default_rng(0)
  records = [source[i] for i in indices]
  stage, op_us = records, {}
  for (name, _, _), op in zip(pre.steps, pre.ops):
    op_us[name] = mean_us(lambda s, op=op: op(s, rng), stage)
    stage = [op(s, rng) for s in stage]
  op_us["to_array"] = mean_us(lambda s: np.asarray(s["image"]), stage)
  arrays = [np.asarray(s["image"]) for s in stage][:BATCH]
  op_us["stack"] = mean_us(lambda _: np.stack(arrays), range(10)) / len(arrays)
  out["op_us"] = op_us
  out["pp_total_us"] = sum(op_us.values())

  # The stream's own cost per sample (grain's shuffle, repeat and random_map, the reader
  # threads' hand-over, the batch loop): an in-memory source, a preprocessing that hands
  # back a ready sample.
  ready = {"image": arrays[0], "text": stage[0]["text"]}
  bare = dataclasses.replace(dataset, train_sources=[[{"caption": "x"}] * 4096],
                             train_weights=[1.0], preprocess=lambda record, rng: dict(ready))
  stream = stream_lib.TrainStream(bare, dataset.data_cfg, BATCH, None, seed=0,
                                  process_index=0, process_count=1)
  stream.next_local()
  out["stream_overhead_us"] = mean_us(lambda _: stream.next_local(), range(20)) / BATCH
  if "tfds" in sources:
    out["tfds_read_us"] = tfds_read_parts(sources["tfds"], indices)

  # Draft: how often it applies to these images, and what it saves where it does.
  crop = pre.ops[1]
  draft = int(math.ceil(crop.min_source_size))  # What Preprocess gives decode.
  encoded = [r["image"] for r in records]
  reduced = sum(ops._decode_bytes(b, draft).size != Image.open(io.BytesIO(b)).size
                for b in encoded)
  large = [data_fixtures.image(i, "jpg", (768, 1024))
           for i in range(min(48, max(8, len(indices) // 6)))]
  decode_crop = lambda d: lambda b: crop({"image": ops._decode_bytes(b, d)}, rng)
  out["draft"] = {
      "min_side": draft,
      "reduced_fraction": reduced / len(encoded),
      "decode_crop_us": {
          "256-512 px": {"draft": mean_us(decode_crop(draft), encoded),
                         "no draft": mean_us(decode_crop(None), encoded)},
          "768-1024 px": {"draft": mean_us(decode_crop(draft), large),
                          "no draft": mean_us(decode_crop(None), large)},
      },
  }

  # Alternatives to what the ops do now, on the same inputs.
  decoded = [ops._decode_bytes(b, draft) for b in encoded]
  large_decoded = [ops._decode_bytes(b, draft) for b in large]

  def resize(images, gap):
    boxes = [ops.crop_box(np.random.default_rng(i), *im.size, (0.9, 1.0), (3 / 4, 4 / 3))
             for i, im in enumerate(images)]
    return mean_us(lambda p: p[0].resize((CROP, CROP), Image.BILINEAR, box=p[1],
                                         reducing_gap=gap), list(zip(images, boxes)))

  captions = [r["caption"] for r in records][:BATCH]
  tok, each = dataset.tokenizer, EachTextTokenizer(dataset.tokenizer)
  length = dataset.max_len
  assert all((tok.encode([c], length) == each.encode([c], length)).all() for c in captions)
  out["alternatives_us"] = {
      "decode (now: convert copies an RGB image)": mean_us(
          lambda b: ops._decode_bytes(b, draft), encoded),
      "decode without the copy": mean_us(lambda b: decode_no_copy(b, draft), encoded),
      "resize 256-512 px, reducing_gap None (now)": resize(decoded, None),
      "resize 256-512 px, reducing_gap 2": resize(decoded, 2.0),
      "resize 768-1024 px (drafted), reducing_gap None (now)": resize(large_decoded, None),
      "resize 768-1024 px (drafted), reducing_gap 2": resize(large_decoded, 2.0),
      "tokenize (now: encode([caption]))": mean_us(lambda c: tok.encode([c], length), captions),
      "tokenize, sentencepiece called with the str": mean_us(
          lambda c: each.encode([c], length), captions),
      "tokenize, 64 captions in one call": mean_us(
          lambda _: tok.encode(captions, length), range(10)) / len(captions),
  }
  return out


def tfds_read_parts(source, indices) -> dict:
  """A tfds read split into the array_record read and the deserialisation, with and without
  the fixture's 'pixels' feature (a zlib-compressed copy of every image, which tfds
  decompresses on every read); {} where TfdsSource reads otherwise than this expects."""
  data = getattr(source, "_data", None)
  if data is None or not hasattr(data, "data_source"):
    return {}
  import tensorflow_datasets as tfds
  serialized = [data.data_source[i] for i in indices]
  features, decoders = source._features, dict(source._decoders or {})
  without = dict(decoders, pixels=tfds.decode.SkipDecoding())
  return {
      "array_record read": mean_us(lambda i: data.data_source[i], indices),
      "deserialise every feature (now)": mean_us(
          lambda s: features.deserialize_example_np(s, decoders=decoders), serialized),
      "deserialise, 'pixels' skipped": mean_us(
          lambda s: features.deserialize_example_np(s, decoders=without), serialized),
  }


def candidate_rates(dataset, threads: int) -> dict:
  """pairs/s of the wds stream (next_local) as it is and with the alternatives applied."""
  fast_pp = preprocess_lib.Preprocess(PP, ops.Context(image_size=CROP, max_len=dataset.max_len,
                                           tokenizer=EachTextTokenizer(dataset.tokenizer)))
  fast = dataclasses.replace(dataset, preprocess=fast_pp)
  variants = {
      f"as is (threads {threads}, prefetch {dataset.data_cfg.prefetch})":
          Timed(dataset, threads, None, False),
      "tokenize with one str call per caption": Timed(fast, threads, None, False),
      f"prefetch {2 * threads}": Timed(dataset, threads, None, False, prefetch=2 * threads),
      "both": Timed(fast, threads, None, False, prefetch=2 * threads),
  }
  rates = interleaved(list(variants.values()))
  return {name: {"pairs_per_s": statistics.median(r), "rounds": r}
          for name, r in zip(variants, rates)}


# Output.

def table(rows: list[dict]) -> list[str]:
  lines = ["| source | threads | batches from | pairs/s (min-max) | ratio to model | "
           f"meets {TARGET_RATIO:g}x |", "|---|---|---|---|---|---|"]
  for row in rows:
    meets = ("yes" if row["ratio"] >= TARGET_RATIO else "NO") if row["target"] else "no target"
    lines.append(f"| {row['kind']} | {row['threads']} | {row['path']} | "
                 f"{row['pairs_per_s']:.0f} ({min(row['rounds']):.0f}-{max(row['rounds']):.0f}) "
                 f"| {row['ratio']:.1f} | {meets} |")
  return lines


def profile_lines(prof: dict) -> list[str]:
  lines = [f"# one thread without grain: mean microseconds per sample over {prof['samples']} "
           "wds samples (median of 3 passes)",
           "| stage | us/sample |", "|---|---|"]
  lines += [f"| read {kind} record | {us:.0f} |" for kind, us in prof["read_us"].items()]
  lines += [f"| tfds record: {name} | {us:.0f} |"
            for name, us in prof.get("tfds_read_us", {}).items()]
  lines += [f"| {name} | {us:.0f} |" for name, us in prof["op_us"].items()]
  lines.append(f"| preprocessing + stacking (sum) | {prof['pp_total_us']:.0f} |")
  lines.append(f"| stream's own cost (grain, reader hand-over, batch loop; default threads) | "
               f"{prof['stream_overhead_us']:.0f} |")
  draft = prof["draft"]
  lines.append(f"| decode's draft (to >= {draft['min_side']} px a side) applies to | "
               f"{100 * draft['reduced_fraction']:.0f}% of the images |")
  for images, cells in draft["decode_crop_us"].items():
    lines += [f"| decode + random_resized_crop, {images}, {k} | {v:.0f} |"
              for k, v in cells.items()]
  lines += [f"| {name} | {us:.0f} |" for name, us in prof["alternatives_us"].items()]
  return lines


def main():
  logging.set_verbosity(logging.ERROR)  # grain warns that prefetch < threads; reported below.
  kinds = [k for k in ARGS.kinds.split(",") if k]
  # What configs/common.py gives a run on real data (not the embedded 'shapes').
  real = config_lib.load_config_file("configs/clip.py:data=wds:/data/{00000..00009}.tar").data
  default_threads = real.threads
  threads = ([int(t) for t in ARGS.threads.split(",")] if ARGS.threads else
             sorted({1, 2, default_threads}))
  if ARGS.quick and not ARGS.threads:
    threads = [default_threads]
  owned = not ARGS.data_dir
  directory = ARGS.data_dir or tempfile.mkdtemp(prefix="input_pipeline_")
  try:
    manifest, seconds = timed(write_data, directory, kinds, ARGS.samples)
    log(f"data ready in {seconds:.1f}s")
    datasets = {kind: pipeline.open_dataset(data_config(manifest, kind, directory),
                                            max_len=MODEL["max_len"], image_size=CROP)
                for kind in kinds}

    model, seconds = timed(ModelStep, real.vocab_size)
    log(f"model built in {seconds:.1f}s; compiling and warming up")
    model.times(1 if ARGS.quick else 2)
    before = model.times(ARGS.model_steps)
    log(f"model step: {statistics.median(before):.3f}s (median of {len(before)})")

    transfer = model.trainer.batch_sharding
    if ARGS.devices > 1:
      transfer = parallel.batch_sharding(parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1))))
    rows = []
    for kind in kinds:
      runs = [(n, False) for n in threads] + [(default_threads, True)]
      variants = [Timed(datasets[kind], n, transfer, through_next) for n, through_next in runs]
      for (n, through_next), rates in zip(runs, interleaved(variants)):
        path = f"next() -> {ARGS.devices} device(s)" if through_next else "next_local()"
        rows.append(dict(kind=kind, threads=n, path=path, rounds=rates,
                         pairs_per_s=statistics.median(rates), target=kind in TARGET_KINDS))
        log(f"{kind} threads={n} {path}: {rows[-1]['pairs_per_s']:.0f} pairs/s")

    after = model.times(ARGS.model_steps)
    step = statistics.median(before + after)
    # The step with the wds pipeline (default threads) producing one batch alongside each.
    feeding = "wds" if "wds" in datasets else kinds[0]
    feed = Timed(datasets[feeding], default_threads, None, False)
    fed = model.times(ARGS.model_steps, alongside=feed.get)
    feed.close()
    log(f"model step with the {feeding} pipeline alongside: {statistics.median(fed):.3f}s")
    model_rate = BATCH / step
    for row in rows:
      row["ratio"] = row["pairs_per_s"] / model_rate
    sources = {k: d.train_sources[0] for k, d in datasets.items()}
    first = datasets["wds"] if "wds" in datasets else datasets[kinds[0]]
    prof = profile(first, sources, ARGS.profile_samples)
    candidates = candidate_rates(first, default_threads) if ARGS.candidates else {}
  finally:
    if owned:
      shutil.rmtree(directory, ignore_errors=True)

  result = {
      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
      "versions": {"jax": jax.__version__, "grain": version("grain"), "pillow": PIL.__version__,
                   "sentencepiece": version("sentencepiece"), "numpy": np.__version__},
      "batch": BATCH, "pp": PP, "image_sides": IMAGE_SIZE, "samples_per_kind": ARGS.samples,
      "prefetch": first.data_cfg.prefetch, "default_threads": default_threads,
      "rounds": ARGS.rounds, "batches_per_round": ARGS.batches,
      "model": {**MODEL, "objective": "clip", "devices": 1, "step_s_before": before,
                "step_s_after": after, "step_s_median": step, "pairs_per_s": model_rate,
                "fed_by": f"{feeding}, {default_threads} threads", "step_s_fed": fed,
                "step_s_fed_median": statistics.median(fed)},
      "rows": rows, "profile": prof, "candidates": candidates,
  }
  if ARGS.json:
    print(json.dumps(result, indent=1))
    return
  versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
  print(f"# {versions}; {result['machine']}; batch {BATCH}; {ARGS.rounds} rounds of "
        f"{ARGS.batches} batches, median (min-max)")
  print(f"# model: CLIP, ViT {MODEL['image']} at {MODEL['image_size']} px, text "
        f"{MODEL['text']} x {MODEL['max_len']} tokens, float32, 1 CPU device: step "
        f"{step:.3f} s (median of {len(before) + len(after)}: {statistics.median(before):.3f} "
        f"before the pipelines, {statistics.median(after):.3f} after), {model_rate:.1f} pairs/s")
  print(f"# the same step while the {feeding} pipeline ({default_threads} threads) prepares one "
        f"batch alongside each: {statistics.median(fed):.3f} s (median of {len(fed)})")
  print(f"# pipeline: {PP} (224 px; the model itself trains at 64 px), prefetch "
        f"{result['prefetch']}")
  print("\n".join(table(rows)))
  print()
  print("\n".join(profile_lines(prof)))
  if candidates:
    print()
    print(f"# wds, next_local(), {default_threads} threads: the alternatives applied, "
          "in alternating rounds")
    print("| variant | pairs/s (min-max) |")
    print("|---|---|")
    for name, c in candidates.items():
      print(f"| {name} | {c['pairs_per_s']:.0f} ({min(c['rounds']):.0f}-"
            f"{max(c['rounds']):.0f}) |")


if __name__ == "__main__":
  main()
