"""The heads' collapse measures on a whole test split: against float64 references written from
the definitions, on 8 devices with padded chunks, and through the Trainer's head functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from configs import clip as clip_config
from lang_image import parallel
from lang_image.evaluators import Evaluator, benchmark_json, eval_sets, periodic
from lang_image.evaluators import prototype_usage
from lang_image.trainer import Trainer
from tests.test_train import pico_towers  # noqa: F401 (an autouse fixture)

MEASURES = ("mutual_information", "mean_entropy", "sample_entropy", "distinct_argmax",
            "distinct_argmax_fraction_of_classes")
VOCAB = 64


def sharding():
  return NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))


def softmax64(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def reference(p, num_classes=None):
  """The measures from their definitions, in float64."""
  p = np.asarray(p, np.float64)
  mean = p.mean(axis=0)
  mean_entropy = -np.sum(mean * np.log(mean))
  sample_entropy = np.mean(-np.sum(p * np.log(p), axis=-1))
  distinct = len(set(np.argmax(p, axis=-1).tolist()))
  out = {"mutual_information": mean_entropy - sample_entropy, "mean_entropy": mean_entropy,
         "sample_entropy": sample_entropy, "distinct_argmax": distinct}
  if num_classes:
    out["distinct_argmax_fraction_of_classes"] = distinct / num_classes
  return out


def usage(p, batch=16, num_classes=None):
  identity = jax.jit(lambda x: x)
  summary = prototype_usage.summarise(identity, p, batch, sharding())
  return summary, prototype_usage.measures(**summary, num_classes=num_classes)


def test_measures_equal_a_float64_reference_over_padded_sharded_chunks():
  rng = np.random.default_rng(0)
  # 37 examples in chunks of 16 over 8 devices: the last chunk holds 5 real rows.
  p = softmax64(3.0 * rng.normal(size=(37, 12))).astype(np.float32)
  summary, got = usage(p, num_classes=30)
  want = reference(p, num_classes=30)
  assert summary["examples"] == 37
  np.testing.assert_allclose(summary["p_sum"], p.astype(np.float64).sum(0), rtol=1e-5)
  for key in ("mutual_information", "mean_entropy", "sample_entropy"):
    assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
  assert got["distinct_argmax"] == want["distinct_argmax"]
  assert got["distinct_argmax_fraction_of_classes"] == want["distinct_argmax_fraction_of_classes"]
  assert 0 < got["mutual_information"] <= np.log(12)


def test_distinct_argmax_counts_exactly_the_winning_prototypes():
  """21 examples whose scores peak on prototypes 1, 4 and 6 in turn (7 each); padding copies of
  the last row are not counted."""
  winners = np.array([1, 4, 6] * 7)
  scores = np.full((21, 8), -1.0)
  scores[np.arange(21), winners] = 1.0
  scores[:, 0] += 0.5  # a runner-up everywhere, never a winner
  p = softmax64(scores / 0.1).astype(np.float32)
  summary, got = usage(p)
  np.testing.assert_array_equal(summary["argmax_counts"], np.bincount(winners, minlength=8))
  assert got["distinct_argmax"] == 3
  assert "distinct_argmax_fraction_of_classes" not in got
  # Three equally used, sharp prototypes: I = log 3 - H(each sample).
  assert got["mutual_information"] == pytest.approx(reference(p)["mutual_information"], rel=1e-5)
  assert got["mutual_information"] == pytest.approx(np.log(3), abs=1e-3)


def test_a_collapsed_head_has_zero_mutual_information_and_one_prototype():
  p = np.tile(softmax64(np.linspace(0, 1, 10)), (24, 1)).astype(np.float32)
  _, got = usage(p, batch=8)
  assert got["mutual_information"] == pytest.approx(0.0, abs=1e-6)
  assert got["mutual_information"] >= 0
  assert got["distinct_argmax"] == 1
  assert got["mean_entropy"] == pytest.approx(reference(p)["mean_entropy"], rel=1e-6)


def test_metric_names_and_their_benchmark_record():
  p = softmax64(np.random.default_rng(1).normal(size=(16, 6))).astype(np.float32)
  identity = jax.jit(lambda x: x)
  metrics = prototype_usage.head_usage({"nclip": {"image": identity, "text": identity}},
                                       p, p[:8], 8, sharding(), num_classes=48)
  assert sorted(metrics) == sorted(f"nclip_heads/{m}/{k}" for m in ("image", "text")
                                   for k in MEASURES)
  only_images = prototype_usage.head_usage({"nclip": {"image": identity, "text": identity}},
                                           p, None, 8, sharding())
  assert sorted(only_images) == sorted(f"nclip_heads/image/{k}" for k in MEASURES[:4])
  record, = benchmark_json.records(metrics, "fake", "m", "p", 1)
  assert record["task"] == "prototype_usage" and record["metrics"] == metrics


NCLIP = {"weight": 1.0, "prototypes": 32, "hidden_dim": 16, "bottleneck_dim": 8}
OBJECTIVES = {
    "xclip": {"clip": {"weight": 1.0}, "nclip": NCLIP},
    "nclip": {"nclip": {**NCLIP, "head_norm": "batch"}},
    "clip": {"clip": {"weight": 1.0}},
}


def fake_eval(rng, n=20):
  """Random images and two captions each; labels of 5 classes and a label set of 40."""
  images = rng.integers(0, 256, size=(n, 16, 16, 3)).astype(np.uint8)
  captions = [f"caption {i}" for i in range(2 * n)]
  tokens = {c: np.concatenate([rng.integers(3, VOCAB, 6), [1, 0]]).astype(np.int32)
            for c in captions}
  labels = rng.integers(0, 5, n)
  es = eval_sets.EvalSet(
      "fake", eval_sets.Split(images, labels), classes=list("abcde"), captions=captions,
      caption_image=np.repeat(np.arange(n), 2),
      label_sets={"full": eval_sets.LabelSet([str(i) for i in range(40)], labels)})
  dataset = type("Tokens", (), {"tokenize": staticmethod(
      lambda texts: np.stack([tokens[t] for t in texts]))})()
  return es, dataset


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_final_evaluation_reports_the_heads_of_the_trainer_on_every_example(name):
  config = clip_config.get_config("batch=16,steps=10")
  config.objectives = ConfigDict(OBJECTIVES[name])
  config.model.update(image="pico/8", text="pico", image_stem="patch", image_size=16,
                      max_len=8, embed_dim=16)
  mesh = parallel.make_mesh(ConfigDict(dict(data=2, fsdp=4)))
  trainer = Trainer(config, mesh, VOCAB)
  state = trainer.init_state(0)
  es, dataset = fake_eval(np.random.default_rng(2))
  cfg = ConfigDict({"zero_shot": False, "retrieval": True, "linear_probe": False,
                    "knn": False, "prototype_usage": True, "batch_size": 8})
  evaluator = Evaluator(dataset, cfg, trainer.batch_sharding, eval_set=es)
  assert evaluator.hardest_num_classes == 40
  with jax.set_mesh(mesh):
    functions = trainer.bind_embedders(state)
    metrics = evaluator(*functions)
    cheap = Evaluator(dataset, periodic.cheap_config(cfg), trainer.batch_sharding, eval_set=es)
    cheap_metrics = cheap(*functions)
  assert "retrieval/i2t_r1" in metrics
  assert not any(prototype_usage.is_metric(k) for k in cheap_metrics)
  if name == "clip":
    assert functions[3] == {}
    assert not any(prototype_usage.is_metric(k) for k in metrics)
    return
  # Retrieval ran in the objective's space: CLIP's for xCLIP, the prototypes' for nCLIP.
  assert evaluator.last.images.shape[1] == (16 if name == "xclip" else 32)
  model = nnx.merge(trainer.graphdef, state["params"], state["rest"])
  head = model.heads["nclip"]
  inputs = {"image": es.test.images, "text": dataset.tokenize(es.captions)}
  for modality in ("image", "text"):
    features = getattr(model, f"{modality}_features")(jnp.asarray(inputs[modality]))
    scores = getattr(head, modality)(features, train=False)
    want = reference(softmax64(np.asarray(scores) / NCLIP.get("student_temp", 0.1)), 40)
    for key in MEASURES:
      got = metrics[f"nclip_heads/{modality}/{key}"]
      assert got == pytest.approx(want[key], rel=1e-4, abs=1e-5), (modality, key)
    assert 1 <= metrics[f"nclip_heads/{modality}/distinct_argmax"] <= 32
