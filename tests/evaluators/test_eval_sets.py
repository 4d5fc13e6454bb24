"""Eval sets: the embedded data with several captions, tfds datasets on disk, prompt files."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from configs import clip as clip_config
from lang_image.data import pipeline, shapes, shapes_tfds
from lang_image.evaluators import eval_sets, shapes_sets, tfds_sets


def eval_cfg(**overrides):
  return ConfigDict({"split": "test", "linear_probe_examples": 300, "captions_per_image": 1,
                     **overrides})


@pytest.fixture(scope="module")
def tiny_dataset(tiny_data_dir):
  data = clip_config.get_config("data=shapes").data
  data.update(data_dir=tiny_data_dir, variant="tiny")
  return pipeline.open_dataset(data, max_len=24)


def test_embedded_set_has_several_captions_per_image_and_probe_splits(tiny_dataset):
  es = shapes_sets.embedded(tiny_dataset, eval_cfg(captions_per_image=3))
  n = shapes.SPLIT_SIZES["tiny"]["test"]
  assert es.test.images.shape == (n, 64, 64, 3) and len(es.test.labels) == n
  assert len(es.captions) == 3 * n
  np.testing.assert_array_equal(es.caption_image, np.repeat(np.arange(n), 3))
  source = tiny_dataset.source("test")
  for i in (0, 7, n - 1):
    stored = source[i]["caption"]
    stored = stored.decode() if isinstance(stored, bytes) else stored
    assert es.captions[3 * i:3 * i + 3] == shapes.captions("test", i, 3)
    assert es.captions[3 * i] == stored
  assert np.array_equal(es.subsets["unseen"], np.isin(es.test.labels,
                                                      list(shapes.HELD_OUT_LABELS)))
  assert np.array_equal(es.subsets["seen"], ~es.subsets["unseen"])
  # The probes fit on single-object train images only: never a held-out class.
  assert len(es.fit.labels) == 300 and set(es.fit.labels) <= set(shapes.TRAIN_LABELS)
  assert len(es.validation.labels) == shapes.SPLIT_SIZES["tiny"]["validation"]
  assert shapes_sets.embedded(tiny_dataset, eval_cfg(), probes=False).fit is None


@pytest.fixture(scope="module", params=["array_record", "tfrecord"])
def tfds_dir(request, tiny_data_dir, tmp_path_factory):
  """The tiny shapes data as a prepared tfds classification dataset in either file format."""
  if request.param == "array_record":
    return tiny_data_dir
  path = str(tmp_path_factory.mktemp("tfrecord"))
  builder = shapes_tfds.LangImageShapes(config="tiny", data_dir=path, file_format="tfrecord")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP),
      file_format="tfrecord")
  return path


def test_tfds_loader_resizes_streams_and_slices_the_probe_splits(tfds_dir, tiny_dataset,
                                                                 tmp_path):
  classes, templates = tmp_path / "classes.txt", tmp_path / "templates.txt"
  classes.write_text("# shapes\n" + "\n".join(shapes.CLASSES) + "\n")
  templates.write_text("a photo of one {}.\n")
  spec = tfds_sets.TfdsSpec("lang_image_shapes/tiny", "stand_in", "test", "train",
                            str(classes), str(templates))
  context = eval_sets.LoadContext(tiny_dataset, eval_cfg(linear_probe_examples=150), 32,
                                  tfds_dir)
  es = tfds_sets.load(spec, context)
  source = tiny_dataset.source("test")
  n = len(source)
  assert es.name == "stand_in" and es.classes == shapes.CLASSES
  assert es.templates == ["a photo of one {}."]
  np.testing.assert_array_equal(es.test.labels, [source[i]["label"] for i in range(n)])
  chunks = list(eval_sets.image_chunks(es.test.images, 100))
  assert len(es.test.images) == n and [len(c) for c in chunks] == [100] * 4 + [n - 400]
  assert chunks[0].shape[1:] == (32, 32, 3) and chunks[0].dtype == np.uint8
  expected = tfds_sets.fit_image(np.asarray(source[3]["image"]), 32)
  np.testing.assert_array_equal(chunks[0][3], expected)
  # Probes: the first 150 train examples fit, the next 400 (a fifth of 2,000) validate.
  train = tiny_dataset.source("train")
  np.testing.assert_array_equal(es.fit.labels, [train[i]["label"] for i in range(150)])
  np.testing.assert_array_equal(es.validation.labels,
                                [train[i]["label"] for i in range(150, 550)])
  assert es.fit.images.shape == (150, 32, 32, 3)


def test_fit_image_scales_the_shorter_side_and_crops_the_centre():
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, 12:68] = 255  # a white band, 70% of the width: the centre crop is half of it
  out = tfds_sets.fit_image(image, 20)
  assert out.shape == (20, 20, 3)
  assert out.min() == 255
  grey = tfds_sets.fit_image(np.full((30, 30), 7, np.uint8), 30)
  assert grey.shape == (30, 30, 3) and np.all(grey == 7)


def test_missing_tfds_dataset_and_unknown_names_fail_with_one_sentence(tmp_path, tiny_dataset):
  with pytest.raises(ValueError, match=r"tfds dataset 'cifar10' is not prepared in .*; "
                                       r"prepare it there first"):
    tfds_sets.prepared_builder("cifar10", str(tmp_path))
  context = eval_sets.LoadContext(tiny_dataset, eval_cfg(), 64, str(tmp_path))
  with pytest.raises(ValueError, match="unknown eval dataset 'mnist'; the known ones are"):
    eval_sets.open_eval_set("mnist", context)
  with pytest.raises(ValueError, match="no prompt file"):
    eval_sets.read_lines("no_such_prompts")


def test_shipped_prompt_files():
  counts = {"cifar10_classes": 10, "cifar100_classes": 100, "imagenet_classes": 1000,
            "cifar_templates": 18, "imagenet_templates": 80}
  for name, count in counts.items():
    lines = eval_sets.read_lines(name)
    assert len(lines) == count, name
    if name.endswith("templates"):
      assert all(t.count("{}") == 1 for t in lines) and len(set(lines)) == count
  imagenet = eval_sets.read_lines("imagenet_classes")
  assert (imagenet[0], imagenet[207], imagenet[281], imagenet[999]) == (
      "tench", "Golden Retriever", "tabby cat", "toilet paper")
  assert eval_sets.read_lines("cifar10_classes")[:3] == ["airplane", "automobile", "bird"]
  assert set(tfds_sets.SPECS) <= set(eval_sets.LOADERS)
