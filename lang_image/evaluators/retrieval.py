"""Image<->text retrieval with one caption per image (caption i belongs to image i).

Recall@k is the percentage of queries whose match is among the top k candidates, ties broken
at random in expectation (`ranks.expected_hits`): a caption identical to the match (same
embedding) shares the hit with it.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.ranks import expected_hits


def retrieval_recall(image_emb, text_emb, ks=(1, 5, 10)) -> dict:
  similarity = np.asarray(image_emb) @ np.asarray(text_emb).T
  index = np.arange(len(similarity))
  return {f"{direction}_r{k}": 100.0 * float(np.mean(expected_hits(scores, index, k)))
          for direction, scores in (("i2t", similarity), ("t2i", similarity.T)) for k in ks}
