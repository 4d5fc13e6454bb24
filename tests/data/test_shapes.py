"""Tests of the procedural shapes dataset and its TFDS builder."""

import collections
import os
import time

import numpy as np
import pytest

from lang_image.data import shapes

TINY = shapes.SPLIT_SIZES["tiny"]


def _shape_words(shape):
  return [shape] + ([shapes._SHAPE_SYNONYMS[shape]] if shape in shapes._SHAPE_SYNONYMS else [])


def test_vocabulary_of_classes():
  assert len(shapes.COLOURS) >= 8 and len(shapes.SHAPES) >= 6
  assert len(shapes.CLASSES) == len(set(shapes.CLASSES)) >= 48
  held = [name.split() for name in shapes.HELD_OUT]
  assert len({c for c, _ in held}) == len(held) == len({s for _, s in held})
  mask = shapes.held_out_mask()
  assert mask.sum() == len(shapes.HELD_OUT)
  assert {shapes.CLASSES[i] for i in np.flatnonzero(mask)} == set(shapes.HELD_OUT)
  # Every held-out colour and shape is still seen in training with others.
  train_names = [shapes.CLASSES[i].split() for i in shapes.TRAIN_LABELS]
  for colour, shape in held:
    assert any(c == colour for c, _ in train_names)
    assert any(s == shape for _, s in train_names)


def test_prompt_templates_format():
  assert 6 <= len(shapes.PROMPT_TEMPLATES) <= 10
  for template in shapes.PROMPT_TEMPLATES:
    assert template.count("{}") == 1
    assert "orange circle" in template.format("orange circle")


def test_generate_is_deterministic_and_order_free():
  later = shapes.generate("train", 7, seed=3)
  for index in range(7):
    shapes.generate("train", index, seed=3)
  again = shapes.generate("train", 7, seed=3)
  assert later["image"].tobytes() == again["image"].tobytes()
  assert later["caption"] == again["caption"]
  other_seed = shapes.generate("train", 7, seed=4)
  other_split = shapes.generate("validation", 7, seed=3)
  for other in (other_seed, other_split, shapes.generate("train", 8, seed=3)):
    assert other["image"].tobytes() != later["image"].tobytes()


def test_example_fields():
  for split in shapes.SPLITS:
    for index in range(20):
      ex = shapes.generate(split, index)
      assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype == np.uint8
      assert isinstance(ex["caption"], str) and ex["caption"].endswith(".")
      assert ex["label"] == ex["objects"][0]["label"]
      assert ex["n_objects"] == len(ex["objects"])
      assert ex["n_objects"] in ((1, 2) if split == "train" else (1,))
      assert ex["held_out"] == (ex["label"] in shapes.HELD_OUT_LABELS)
      # Not a flat background: the scene is more than one colour.
      assert ex["image"].reshape(-1, 3).std(0).max() > 5


def test_held_out_pairs_never_in_train():
  n_objects = collections.Counter()
  # The default config's whole train split: scene specs are cheap.
  for index in range(shapes.SPLIT_SIZES["default"]["train"]):
    spec = shapes.describe("train", index)
    n_objects[spec["n_objects"]] += 1
    for obj in spec["objects"]:
      assert obj["label"] not in shapes.HELD_OUT_LABELS, (index, obj)
  assert n_objects[1] > 0.5 * sum(n_objects.values())
  assert n_objects[2] > 0.2 * sum(n_objects.values())


def test_eval_splits_cover_all_classes():
  counts = collections.Counter(shapes.describe("test", i)["label"] for i in range(TINY["test"]))
  assert set(counts) == set(range(shapes.NUM_CLASSES))
  assert max(counts.values()) - min(counts.values()) <= 1
  labels = [shapes.describe("validation", i)["label"] for i in range(TINY["validation"])]
  assert set(labels) == set(range(shapes.NUM_CLASSES))
  assert any(label in shapes.HELD_OUT_LABELS for label in labels)


def test_captions_name_the_label_first():
  named, first, total = 0, 0, 0
  for index in range(TINY["train"]):
    spec = shapes.describe("train", index)
    caption, objs = spec["caption"], spec["objects"]
    total += 1
    named += objs[0]["colour"] in caption and objs[0]["shape"] in caption
    assert any(w in caption for w in _shape_words(objs[0]["shape"])), caption
    if len(objs) == 2 and objs[0]["colour"] != objs[1]["colour"]:
      assert caption.index(objs[0]["colour"]) < caption.index(objs[1]["colour"]), caption
      first += 1
  assert named > 0.9 * total
  assert first > 0.15 * total


def test_caption_geometry_matches_the_scene():
  for index in range(TINY["train"]):
    spec = shapes.describe("train", index)
    caption, objs = spec["caption"], spec["objects"]
    if len(objs) == 2:
      a, b = objs
      if " to the left of " in caption:
        assert a["cx"] < b["cx"], caption
      if " above " in caption:
        assert a["cy"] < b["cy"], caption
    elif "top left" in caption:
      assert objs[0]["cx"] < 64 / 3 and objs[0]["cy"] < 64 / 3, caption
    elif "on the right" in caption:
      assert objs[0]["cx"] > 2 * 64 / 3, caption


def test_objects_drawn_in_their_colour_without_overlap():
  for index in range(200):
    ex = shapes.generate("train", index)
    objs = ex["objects"]
    for obj in objs:
      pixel = ex["image"][int(obj["cy"]), int(obj["cx"])].astype(int)
      assert np.abs(pixel - shapes.COLOURS[obj["colour"]]).max() < 45, (index, obj)
    if len(objs) == 2:
      a, b = objs
      dist = np.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"])
      assert dist >= (a["diameter"] + b["diameter"]) / 2


@pytest.fixture(scope="module")
def tiny_builder(tmp_path_factory):
  from lang_image.data import shapes_tfds
  data_dir = str(tmp_path_factory.mktemp("data"))
  return data_dir, shapes_tfds.prepare(data_dir, "tiny")


def test_builder_round_trips_generate(tiny_builder):
  data_dir, builder = tiny_builder
  assert builder.name == "lang_image_shapes"
  assert any(f.endswith(".array_record-00000-of-00001") for f in os.listdir(builder.data_dir))
  assert builder.info.features["label"].names == shapes.CLASSES
  for split, n in TINY.items():
    source = builder.as_data_source(split)
    assert len(source) == n
    for index in (0, 1, n // 2, n - 1):
      stored, fresh = source[index], shapes.generate(split, index)
      np.testing.assert_array_equal(stored["image"], fresh["image"])
      assert stored["caption"].decode() == fresh["caption"]
      for key in ("label", "n_objects", "held_out"):
        assert stored[key] == fresh[key], key
  # Every stored caption is what the tokenizer is trained on.
  captions = [e["caption"].decode() for e in builder.as_data_source("train")]
  assert captions == [shapes.describe("train", i)["caption"] for i in range(TINY["train"])]


def test_prepare_reuses_and_registers(tiny_builder):
  import tensorflow_datasets as tfds
  from lang_image.data import shapes_tfds
  data_dir, builder = tiny_builder
  start = time.perf_counter()
  again = shapes_tfds.prepare(data_dir, "tiny")
  assert time.perf_counter() - start < 2
  assert os.fspath(again.data_dir) == os.fspath(builder.data_dir)
  sources = tfds.data_source("lang_image_shapes/tiny", data_dir=data_dir)
  assert len(sources["test"]) == TINY["test"]
  with pytest.raises(ValueError):
    shapes_tfds.prepare(data_dir, "huge")
