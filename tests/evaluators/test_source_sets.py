"""Retrieval eval sets read from any data source."""

import numpy as np
import pytest
from ml_collections import ConfigDict

import data_fixtures
from lang_image.evaluators import eval_sets


def context(limit):
  return eval_sets.LoadContext(dataset=None, eval_cfg=ConfigDict(dict(source_examples=limit)),
                               image_size=24)


def test_a_jsonl_source_becomes_a_retrieval_set(tmp_path):
  planted = data_fixtures.write_jsonl(str(tmp_path))
  es = eval_sets.open_eval_set(planted.spec, context(limit=25))
  good = [c for c in planted.captions[:40] if c is not None]
  assert es.test.images.shape == (25, 24, 24, 3) and es.test.labels is None
  expected = [t for c in good[:25] for t in ([c] if isinstance(c, str) else c)]
  assert es.captions == expected
  # Every caption points at its own image; a sample with several captions has several.
  rows = [i for i, c in enumerate(good[:25]) for _ in ([c] if isinstance(c, str) else c)]
  np.testing.assert_array_equal(es.caption_image, rows)
  assert es.classes is None and es.name == planted.spec


def test_unknown_names_list_the_sources_too():
  with pytest.raises(ValueError, match="data sources such as wds:"):
    eval_sets.open_eval_set("no_such_set", context(10))
