"""SentencePiece tokenizer: training in memory, batch encoding to fixed length.

Ids: 0 = pad, 1 = EOS, 2 = unknown, no BOS. Encoded rows always end with EOS
(kept even when truncating), since the text tower pools at the EOS token.

`python -m lang_image.train_tokenizer` trains one on any source's captions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
import io
import os

import numpy as np
import sentencepiece as spm

from lang_image import storage
from lang_image.data.sources.base import BadSample
from lang_image.interop import bpe

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


def _with_lexicon(sentences: Iterable[str]) -> Iterator[str]:
  """The sentences, then each distinct word once on its own.

  SentencePiece seeds unigram pieces only from substrings that end before
  varying continuations; a word always followed by a space (every colour in
  the shapes captions) would never become a piece and be split into letters.
  """
  words = set()
  for sentence in sentences:
    words.update(sentence.split())
    yield sentence
  yield from sorted(words)


def train_sentencepiece(sentences: Iterable[str], model_path: str, vocab_size: int = 1000) -> str:
  """Trains a unigram model on `sentences` and writes it atomically to `model_path`.

  `vocab_size` is an upper bound: a small corpus yields fewer pieces. Same
  input, same model bytes. Returns `model_path`.
  """
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=_with_lexicon(sentences),
      model_writer=model,
      model_type="unigram",
      vocab_size=vocab_size,
      hard_vocab_limit=False,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      character_coverage=1.0,
      # Case folding inside the model, so "A Photo" and "a photo" agree.
      normalization_rule_name="nmt_nfkc_cf",
      # One thread keeps the model bytes reproducible.
      num_threads=1,
      minloglevel=2,
  )
  # Readers in other processes never see a half-written model (lang_image.storage).
  storage.write_bytes(model_path, model.getvalue())
  return model_path


class Tokenizer:
  """A trained SentencePiece model with fixed-length batch encode/decode."""

  def __init__(self, model_path: str):
    self.model_path = model_path
    # Read as bytes, so that the model may be on cloud storage (lang_image.storage).
    self._sp = spm.SentencePieceProcessor(model_proto=storage.read_bytes(model_path))

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  def encode(self, texts: list[str] | str, max_len: int) -> np.ndarray:
    """int32 [N, max_len]: ids, then EOS, then padding; long texts are cut before EOS."""
    if max_len < 1:
      raise ValueError(f"max_len must be positive, got {max_len}")
    if isinstance(texts, (str, bytes)):
      texts = [texts]
    texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
    out = np.full((len(texts), max_len), self.pad_id, np.int32)
    for row, ids in zip(out, self._sp.encode(texts, out_type=int)):
      ids = ids[:max_len - 1]
      row[:len(ids)] = ids
      row[len(ids)] = self.eos_id
    return out

  def decode(self, ids) -> list[str]:
    """Texts of [N, L] (or one [L]) id rows, each read up to its first EOS or pad."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
      ids = ids[None]
    rows = []
    for row in ids.tolist():
      end = next((i for i, t in enumerate(row) if t in (self.eos_id, self.pad_id)), len(row))
      rows.append(row[:end])
    return self._sp.decode(rows)


def load(path: str):
  """The tokenizer stored at `path`: a SentencePiece model, or a CLIP BPE vocabulary (a folder
  with vocab.json and merges.txt, or bpe_simple_vocab_16e6.txt.gz) read by
  lang_image.interop.bpe. Both encode(texts, max_len) to int32 rows ending in end-of-text."""
  if os.path.isdir(path) or path.endswith((".txt", ".txt.gz")):
    return bpe.BpeTokenizer.from_path(path)
  return Tokenizer(path)


def source_captions(sources, weights=None, limit: int = 200_000,
                    skipped: dict | None = None) -> Iterator[str]:
  """Up to `limit` captions of the sources, split between them by weight and spread evenly
  over each (every k-th sample); every caption of a sample with several. Faulty samples are
  passed over and counted in `skipped` (reason -> count)."""
  weights = weights or [1.0] * len(sources)
  total = sum(weights)
  for source, weight in zip(sources, weights):
    n = len(source)
    take = max(1, min(n, int(round(limit * weight / total))))
    for i in np.linspace(0, n - 1, take).round().astype(int) if n else []:
      try:
        caption = source[int(i)]["caption"]
      except BadSample as e:
        if skipped is not None:
          skipped[e.reason] = skipped.get(e.reason, 0) + 1
        continue
      yield from ([caption] if isinstance(caption, str) else caption)


def train_on_sources(sources, model_path: str, vocab_size: int, limit: int = 200_000,
                     weights=None) -> dict:
  """Trains the tokenizer of a run's sources on up to `limit` of their captions and writes it
  to `model_path`; -> the skipped samples per reason."""
  from absl import logging
  skipped = {}
  logging.info("Training a %d-piece SentencePiece tokenizer on up to %d captions of %s -> %s",
               vocab_size, limit, [s.name for s in sources], model_path)
  train_sentencepiece(source_captions(sources, weights, limit, skipped), model_path,
                      vocab_size)
  return skipped
