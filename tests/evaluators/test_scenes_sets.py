"""The scenes eval set, and the Evaluator's named label sets (metrics per label set)."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from configs import clip as clip_config
from lang_image.data import checks, pipeline, scenes
from lang_image.errors import ConfigError
from lang_image.evaluators import Evaluator, benchmark_json, choice, eval_sets, scenes_sets


@pytest.fixture(scope="module")
def scenes_dataset(tiny_scenes_dir):
  config = clip_config.get_config("data=scenes")
  config.data.update(data_dir=tiny_scenes_dir, variant="tiny")
  return config, pipeline.open_for(config)


def test_scenes_config_trains_and_evaluates_on_scenes():
  config = clip_config.get_config("data=scenes")
  # eval.dataset=auto follows the training data to its own eval set.
  assert config.data.name == "scenes" and choice.choose(config)[0] == "scenes"
  assert config.data.caption_noise == 0.0 and config.model.max_len == 48
  assert choice.choose(clip_config.get_config())[0] == "scenes"  # The default data.
  assert choice.choose(clip_config.get_config("data=shapes"))[0] == "shapes"
  config.data.caption_noise = 0.2
  checks.check_config(config.data)
  config.data.caption_noise = 1.5
  with pytest.raises(ConfigError, match=r"caption_noise must be a fraction in \[0, 1\]"):
    checks.check_config(config.data)
  shapes_config = clip_config.get_config("data=shapes")
  shapes_config.data.caption_noise = 0.2
  with pytest.raises(ConfigError, match="'shapes' cannot make its captions noisy"):
    checks.check_config(shapes_config.data)


def test_scenes_eval_set_labels_agree_with_the_generator(scenes_dataset):
  config, dataset = scenes_dataset
  config.eval.linear_probe_examples = 100
  config.eval.captions_per_image = 2
  context = eval_sets.LoadContext(dataset, config.eval, 64)
  es = eval_sets.open_eval_set("scenes", context)
  n = scenes.SPLIT_SIZES["tiny"]["test"]
  assert es.test.images.shape == (n, 64, 64, 3) and es.test.labels is None
  assert set(es.label_sets) == {*scenes_sets.ZERO_SHOT, *scenes_sets.PROBES}
  expected = [scenes.describe("test", i) for i in range(n)]
  for name, labelling in es.label_sets.items():
    np.testing.assert_array_equal(labelling.test, [e[name] for e in expected])
    assert labelling.classes == scenes.LABEL_SETS[name]
    assert (labelling.templates is not None) == (name in scenes_sets.ZERO_SHOT)
  single = np.array([len(e["objects"]) == 1 for e in expected])
  assert np.array_equal(es.label_sets["colour"].test >= 0, single)
  assert np.all(es.label_sets["count"].test >= 0)
  unseen = np.array([e["held_out"] for e in expected]) & single
  for name in ("colour_shape", "full"):
    assert np.array_equal(es.label_sets[name].subsets["unseen"], unseen)
    assert np.array_equal(es.label_sets[name].subsets["seen"], single & ~unseen)
  assert unseen.sum() > 0
  assert es.captions[::2] == [e["caption"] for e in expected]
  assert es.captions[2 * 5:2 * 5 + 2] == scenes.captions("test", 5, 2)
  # Probes: single-object train images, never a held-out composition.
  texture = es.label_sets["texture"]
  assert len(es.fit.images) == len(texture.fit) == 100 and np.all(texture.fit >= 0)
  assert np.all(es.label_sets["size"].validation >= 0)
  assert set(texture.fit) == set(range(len(scenes.TEXTURES)))


def _evaluator(eval_set, tokens, **tasks):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  cfg = ConfigDict({"zero_shot": True, "retrieval": False, "linear_probe": False,
                    "knn": False, "batch_size": 8, "knn_k": 2, "knn_temperature": 0.07,
                    **tasks})
  dataset = type("Prompts", (), {"tokenize": staticmethod(
      lambda texts: np.stack([tokens[t] for t in texts]))})()
  return Evaluator(dataset, cfg, sharding, eval_set=eval_set)


def test_evaluator_reports_each_label_set_on_its_own_images():
  """Unit vectors as embeddings: class c of 'colour' is axis c, of 'count' axes 3 and 4,
  which no image touches (every count score ties); axes 6 and 7 carry a texture."""
  dims = [0, 1, 1, 5, 5, 2]
  textures = [0, 1, 0, 1, 0, 1]
  images = np.zeros((6, 1, 1, 8), np.float32)
  images[np.arange(6), 0, 0, dims] = 1
  images[np.arange(6), 0, 0, [6 + t for t in textures]] = 1
  fit = np.zeros((4, 1, 1, 8), np.float32)
  fit[np.arange(4), 0, 0, [6, 6, 7, 7]] = 1
  tokens = {f"{name}.": np.eye(8, dtype=np.float32)[d]
            for name, d in [("c0", 0), ("c1", 1), ("c2", 2), ("n0", 3), ("n1", 4)]}
  label_sets = {
      "colour": eval_sets.LabelSet(["c0", "c1", "c2"], np.array([0, 1, 2, -1, -1, 2]), ["{}."],
                                   {"unseen": np.array([0, 0, 1, 0, 0, 0], bool)}),
      "count": eval_sets.LabelSet(["n0", "n1"], np.array([0, 1, 0, 1, 0, 1]), ["{}."]),
      "texture": eval_sets.LabelSet(["solid", "striped"], np.array([0, 1, 0, 1, -1, 1]),
                                    fit=np.array([0, 0, 1, 1]), validation=np.array([0, 1])),
  }
  es = eval_sets.EvalSet("fake", eval_sets.Split(images), fit=eval_sets.Split(fit),
                         validation=eval_sets.Split(fit[1:3]), label_sets=label_sets)
  evaluator = _evaluator(es, tokens, knn=True)
  unit = jax.jit(lambda x: x.reshape(x.shape[0], -1) / jax.numpy.linalg.norm(
      x.reshape(x.shape[0], -1), axis=-1, keepdims=True))
  metrics = evaluator(unit, jax.jit(lambda t: t), unit)
  # colour: images 0, 1, 5 right, image 2 wrong; images 3 and 4 have no colour label.
  assert metrics["zero_shot/colour/top1"] == pytest.approx(75.0)
  assert metrics["zero_shot/colour/top1_unseen"] == pytest.approx(0.0)
  assert metrics["zero_shot/count/top1"] == pytest.approx(50.0)
  assert metrics["knn/texture/top1"] == pytest.approx(100.0)
  assert not any(k.startswith("zero_shot/texture") or k == "zero_shot/top1" for k in metrics)
  record = {r["task"]: r for r in benchmark_json.records(metrics, "fake", "m", "p", 1)}
  assert record["zeroshot_classification"]["metrics"]["colour/acc1"] == pytest.approx(0.75)
  assert record["knn_classification"]["metrics"]["texture/acc1"] == pytest.approx(1.0)
