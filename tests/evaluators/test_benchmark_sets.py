"""Labelled eval sets by config alone (CLIP_benchmark's webdataset layout, CSV/JSONL with a
label column) and the choice of eval set that follows the training data."""

import os
import types

import numpy as np
import pytest
from ml_collections import ConfigDict

import labelled_fixtures as lf
from configs import clip as clip_config
from lang_image.evaluators import choice, eval_sets
from lang_image.evaluators import periodic
# Importing the package registers every loader, in its order.
import lang_image.evaluators  # noqa: F401


def context(**eval_overrides):
  cfg = ConfigDict({"split": "test", "source_examples": 1000, "class_names": "",
                    "templates": "", "label_key": "", **eval_overrides})
  return eval_sets.LoadContext(types.SimpleNamespace(), cfg, image_size=32, probes=False)


def test_clip_benchmark_folder_gives_labels_classes_templates_and_captions(tmp_path):
  root = lf.write_benchmark(str(tmp_path / "bench"), train=8, test=24, shards=3)
  for name in (root, f"wds:{root}"):
    es = eval_sets.open_eval_set(name, context())
    assert es.classes == lf.CLASSES
    # CLIP_benchmark's {c} becomes the {} of lang_image's templates.
    assert es.templates == ['a photo of a {}.', 'a picture of the "{}".']
    assert es.test.images.shape == (24, 32, 32, 3)
    # Shards are read in order, each in its members' order: shard s holds samples s, s+3, ...
    order = [i for s in range(3) for i in range(s, 24, 3)]
    np.testing.assert_array_equal(es.test.labels, [lf.label_of(i) for i in order])
    assert es.captions == [lf.caption(i) for i in order]
    np.testing.assert_array_equal(es.caption_image, np.arange(24))
    # The square's colour survives decoding and resizing: each image is closest to its class.
    centre = es.test.images.reshape(24, -1, 3).astype(float)
    colours = np.array(list(lf.COLOURS.values()), float)
    nearest = [np.argmin([np.abs(img - c).sum(-1).min() for c in colours]) for img in centre]
    np.testing.assert_array_equal(nearest, es.test.labels)


def test_shard_pattern_finds_class_names_one_folder_up(tmp_path):
  root = lf.write_benchmark(str(tmp_path / "bench"), train=8, test=12, shards=2)
  es = eval_sets.open_eval_set(f"wds:{root}/test/{{0..1}}.tar", context())
  assert es.classes == lf.CLASSES and len(es.test.labels) == 12


@pytest.mark.parametrize("kind,names", [("csv", False), ("jsonl", False), ("csv", True)])
def test_tables_with_a_label_column(tmp_path, kind, names):
  spec = lf.write_table(str(tmp_path / kind), kind, n=10, names=names)
  es = eval_sets.open_eval_set(spec, context())
  np.testing.assert_array_equal(es.test.labels, [lf.label_of(i) for i in range(10)])
  assert es.classes == lf.CLASSES and es.templates == ["a photo of a {}."]
  assert es.captions == [lf.caption(i) for i in range(10)]


def test_explicit_files_and_label_column(tmp_path):
  spec = lf.write_table(str(tmp_path / "t"), "jsonl", n=8)
  path = spec.partition(":")[2]
  lines = open(path).read().replace('"label"', '"digit"')
  open(path, "w").write(lines)
  names = tmp_path / "names.txt"
  names.write_text("zero\none\ntwo\nthree\n")
  templates = tmp_path / "t.txt"
  templates.write_text("the number {c}\n")
  os.remove(os.path.join(os.path.dirname(path), "classnames.txt"))
  es = eval_sets.open_eval_set(spec, context(class_names=str(names), templates=str(templates),
                                             label_key="digit"))
  assert es.classes == ["zero", "one", "two", "three"] and es.templates == ["the number {}"]


def test_bad_labels_fail_with_one_sentence(tmp_path):
  spec = lf.write_table(str(tmp_path / "t"), "csv", n=6)
  folder = os.path.dirname(spec.partition(":")[2])
  open(os.path.join(folder, "classnames.txt"), "w").write("red square\ngreen square\n")
  with pytest.raises(ValueError, match=r"label 2 of row 2 of .* is outside the 2 classes"):
    eval_sets.open_eval_set(spec, context())
  with pytest.raises(ValueError, match="has no label column 'kind'"):
    eval_sets.open_eval_set(spec, context(label_key="kind"))


def test_a_source_without_class_names_is_retrieval_only(tmp_path):
  paths = lf.write_shards(str(tmp_path / "val"), 6, 1, with_labels=False)
  es = eval_sets.open_eval_set(f"wds:{paths[0]}", context())
  assert es.classes is None and es.test.labels is None and len(es.captions) == 6


def test_periodic_set_is_the_first_examples_without_probes(tmp_path):
  root = lf.write_benchmark(str(tmp_path / "bench"), train=8, test=12, shards=1)
  es = eval_sets.open_eval_set(root, context())
  cut = periodic.first_examples(es, 5)
  assert len(cut.test.images) == 5 and cut.captions == es.captions[:5]
  np.testing.assert_array_equal(cut.test.labels, es.test.labels[:5])
  assert cut.fit is None and cut.classes == es.classes


def config_for(data, eval_dataset="auto"):
  config = clip_config.get_config(f"data={data}")
  config.eval.dataset = eval_dataset
  return config


def test_auto_follows_the_training_data(tmp_path):
  name, reason = choice.choose(config_for("shapes"))
  assert name == "shapes" and "built-in dataset 'shapes'" in reason
  root = lf.write_benchmark(str(tmp_path / "bench"), train=8, test=4, shards=1)
  own = f"wds:{root}/train/0.tar"
  name, reason = choice.choose(config_for(own))
  # Never the embedded data's numbers for a run on one's own data.
  assert name == "" and "names no eval set" in reason and "--config.eval.dataset=" in reason
  assert choice.announce(name, reason).startswith("No evaluation: the run trains on its own")
  assert choice.choose(config_for(own, root))[0] == root
  assert "not the training data" in choice.choose(config_for(own, "shapes"))[1]
  assert choice.choose(config_for("shapes", "none"))[0] == ""
