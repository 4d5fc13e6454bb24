"""Pictures: every figure renders to a non-empty PNG and a TensorBoard image; PCA is exact."""

import glob
import os
import types

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from lang_image import pictures
from lang_image.evaluators import Embeddings, eval_sets, write_json


def unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def fake_evaluator(rng, n=60, classes=6, captions=2, dim=16):
  """An evaluator after a call: images, labels, class and caption embeddings."""
  labels = np.arange(n) % classes
  class_emb = unit(rng.normal(size=(classes, dim)))
  image_emb = unit(class_emb[labels] + 0.3 * rng.normal(size=(n, dim)))
  caption_emb = unit(np.repeat(image_emb, captions, axis=0) + 0.2 * rng.normal(
      size=(n * captions, dim)))
  # Flat-coloured squares on grey, like the embedded data (noise would not compress).
  images = np.full((n, 64, 64, 3), 200, np.uint8)
  images[:, 16:48, 16:48] = rng.integers(0, 256, size=(n, 1, 1, 3))
  es = eval_sets.EvalSet(name="fake", test=eval_sets.Split(images, labels),
                         classes=[f"class {c}" for c in range(classes)], templates=["{}"],
                         captions=["x"] * (n * captions),
                         caption_image=np.repeat(np.arange(n), captions))
  return types.SimpleNamespace(eval_set=es, last=Embeddings(image_emb, class_emb, caption_emb))


def test_every_picture_is_written_as_png_and_tensorboard_image(tmp_path):
  from clu import metric_writers
  evaluator = fake_evaluator(np.random.default_rng(0))
  workdir = str(tmp_path)
  train_records = [{"step": s, "loss": 5.0 / s, "clip/loss": 4.0 / s} for s in (10, 20, 30)]
  for step in (15, 30):
    write_json(workdir, step, {"zero_shot/top1": step * 1.0, "knn/top1": 2.0 * step})
  writer = metric_writers.create_default_writer(workdir)
  paths = pictures.write_run(workdir, 30, evaluator, writer, train_records)
  writer.flush()
  assert sorted(paths) == ["embedding_pca", "similarity", "training_curves",
                           "zero_shot_predictions"]
  assert paths["similarity"] == os.path.join(workdir, "pictures", "fake", "similarity.png")
  for path in paths.values():
    assert 2_000 < os.path.getsize(path) < 100_000, path
    pixels = np.asarray(Image.open(path).convert("L"), np.float32)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels.std() > 10, path
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
  acc.Reload()
  assert {"pictures/training_curves", "pictures/fake/similarity",
          "pictures/fake/embedding_pca", "pictures/fake/zero_shot_predictions"} <= set(
              acc.Tags()["tensors"])
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))


def test_retrieval_only_sets_get_similarity_and_pca_of_captions(tmp_path):
  evaluator = fake_evaluator(np.random.default_rng(1))
  evaluator.eval_set.classes = None
  evaluator.last.classes = None
  figs = pictures.figures(evaluator)
  assert sorted(figs) == ["embedding_pca", "similarity"]


def test_pca_recovers_a_plane_exactly():
  rng = np.random.default_rng(2)
  basis = np.linalg.qr(rng.normal(size=(10, 2)))[0]  # an orthonormal plane in 10-D
  points = rng.normal(size=(30, 2)) * [3.0, 1.0]
  (a, b), explained = pictures.pca_2d(points[:20] @ basis.T, points[20:] @ basis.T)
  projected = np.concatenate([a, b])
  np.testing.assert_allclose(explained.sum(), 1.0)
  assert explained[0] > explained[1]
  # Distances in the plane are kept.
  dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
  np.testing.assert_allclose(dist(projected), dist(points), atol=1e-10)
  assert a.shape == (20, 2) and b.shape == (10, 2)
