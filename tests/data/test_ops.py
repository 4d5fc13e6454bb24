"""The preprocessing op registry: parsing, each op's output, determinism, bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from lang_image.errors import ConfigError
from lang_image.data import ops
from lang_image.data import preprocess as preprocess_lib
from lang_image.data.sources.base import BadSample


def jpeg(width, height, seed=0):
  rng = np.random.default_rng(seed)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
      buffer, "JPEG")
  return buffer.getvalue()


class Tok:
  def encode(self, texts, max_len):
    return np.asarray([[len(t), 1] + [0] * (max_len - 2) for t in texts], np.int32)


CTX = ops.Context(image_size=32, max_len=6, tokenizer=Tok())


def test_parse_literal_arguments():
  steps = preprocess_lib.parse("decode | random_resized_crop(48, scale=(0.5, 1.0)) |flip_lr|tokenize")
  assert steps == [("decode", (), {}), ("random_resized_crop", (48,), {"scale": (0.5, 1.0)}),
                   ("flip_lr", (), {}), ("tokenize", (), {})]


@pytest.mark.parametrize("pp, message", [
    ("decode|rotate(10)", "unknown preprocessing op 'rotate'"),
    ("decode|resize(size=)", "does not parse"),
    ("decode|resize(open('x'))", "does not parse"),
    ("decode|flip_lr(q=1)", "bad arguments"),
    ("random_resized_crop(scale=(0.5, 2.0))", "scale"),
    ("choose_caption('longest')", "'random' or 'first'"),
])
def test_bad_pipelines_fail_with_one_sentence(pp, message):
  with pytest.raises(ConfigError, match=message):
    preprocess_lib.Preprocess(pp, CTX)


def test_full_pipeline_output():
  pp = preprocess_lib.Preprocess("decode|random_resized_crop(scale=(0.5, 1.0))|flip_lr|choose_caption|"
                      "tokenize", CTX)
  out = pp({"image": jpeg(90, 60), "caption": ["abc", "de"]}, np.random.default_rng(0))
  assert out["image"].shape == (32, 32, 3) and out["image"].dtype == np.uint8
  assert out["text"].shape == (6,) and out["text"][0] in (2, 3)
  assert out["caption"] in ("abc", "de")


def test_random_ops_are_functions_of_the_generator():
  pp = preprocess_lib.Preprocess("decode|random_resized_crop|flip_lr|choose_caption", CTX)
  sample = {"image": jpeg(90, 60), "caption": ["a", "b", "c", "d"]}
  runs = [pp(sample, np.random.default_rng(s)) for s in (7, 7, 8)]
  np.testing.assert_array_equal(runs[0]["image"], runs[1]["image"])
  assert not np.array_equal(runs[0]["image"], runs[2]["image"])


def test_crop_box_follows_scale_and_ratio():
  rng = np.random.default_rng(0)
  areas, ratios = [], []
  for _ in range(2000):
    left, top, right, bottom = ops.crop_box(rng, 200, 100, (0.3, 0.6), (0.5, 2.0))
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
    areas.append((right - left) * (bottom - top) / 20000)
    ratios.append((right - left) / (bottom - top))
  assert 0.28 <= min(areas) and max(areas) <= 0.62
  assert 0.45 <= min(ratios) and max(ratios) <= 2.1
  # Impossible draws fall back to the largest central window within the ratio range.
  assert ops.crop_box(rng, 300, 10, (0.99, 1.0), (1.0, 1.0)) == (145, 0, 155, 10)


def test_geometric_ops():
  image = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
  rng = np.random.default_rng(0)
  small = preprocess_lib.Preprocess("resize_small(20)", CTX)({"image": image}, rng)["image"]
  assert small.shape == (20, 30, 3)
  crop = preprocess_lib.Preprocess("central_crop(20)", CTX)({"image": image}, rng)["image"]
  np.testing.assert_array_equal(crop, image[10:30, 20:40])
  flipped = preprocess_lib.Preprocess("flip_lr(1.0)", CTX)({"image": image}, rng)["image"]
  np.testing.assert_array_equal(flipped, image[:, ::-1])
  assert preprocess_lib.Preprocess("resize", CTX)({"image": image}, rng)["image"].shape == (32, 32, 3)


def test_value_range_and_normalize():
  image = np.array([[[0, 255, 51]]], np.uint8)
  rng = np.random.default_rng(0)
  out = preprocess_lib.Preprocess("value_range(-1, 1)", CTX)({"image": image}, rng)["image"]
  np.testing.assert_allclose(out, [[[-1.0, 1.0, -0.6]]], atol=1e-6)
  out = preprocess_lib.Preprocess("normalize((0.5, 0.5, 0.2), (0.5, 0.25, 0.1))", CTX)(
      {"image": image}, rng)["image"]
  np.testing.assert_allclose(out, [[[-1.0, 2.0, 0.0]]], atol=1e-6)


def test_decode_rejects_corrupt_bytes_and_accepts_pixels():
  decode = preprocess_lib.Preprocess("decode", CTX)
  rng = np.random.default_rng(0)
  for bad in (jpeg(50, 50)[:200], b"not an image"):
    with pytest.raises(BadSample) as info:
      decode({"image": bad}, rng)
    assert info.value.reason == "image_unreadable"
  grey = decode({"image": np.full((5, 6), 9, np.uint8)}, rng)["image"]
  assert grey.shape == (5, 6, 3) and (grey == 9).all()
  rgba = decode({"image": np.zeros((5, 6, 4), np.uint8)}, rng)["image"]
  assert rgba.shape == (5, 6, 3)


def test_large_jpegs_decode_at_reduced_scale_before_a_crop():
  """decode + random_resized_crop(32, scale >= 0.5) needs about 45 px, so an 800 x 600 JPEG
  is decoded at 1/8 scale (100 x 75) instead of in full."""
  pp = preprocess_lib.Preprocess("decode|random_resized_crop(32, scale=(0.5, 1.0))", CTX)
  seen = []
  first = pp.ops[1]
  pp.ops[1] = lambda sample, rng: (seen.append(sample["image"].size), first(sample, rng))[1]
  out = pp({"image": jpeg(800, 600)}, np.random.default_rng(0))
  assert seen == [(100, 75)] and out["image"].shape == (32, 32, 3)
  full = preprocess_lib.Preprocess("decode", CTX)({"image": jpeg(800, 600)}, np.random.default_rng(0))
  assert full["image"].shape == (600, 800, 3)
