"""lang_image's CLIP BPE gives transformers' CLIPTokenizer ids, read from the same files."""

import os
import random

import numpy as np
import pytest
from transformers import CLIPTokenizer

from lang_image.data import tokenizer as tokenizer_lib
from lang_image.interop import bpe

import clip_vocab

HANDWRITTEN = [
    "A photo of the dog's left corner!!", "It's   going\tthere...\n", "we'll see; they've gone",
    "DON'T STOP", "I'M here, you're there, he'd know", "naïve café über straße",
    "Crème brûlée à la carte", "日本 東京の写真", "привет, мир!", "ΟΔΟΣ ελλάδα", "İstanbul",
    "e\u0301 (combining accent)", "<|endoftext|>hi<|startoftext|>", "<|ENDOFTEXT|>!!",
    "a<|endoftext|>", "&amp; &lt;b&gt; 3.14 12345 1,000,000", "🙂🙂 emoji 🙂 👍🏽",
    "\u200b zero\u200bwidth", "x\x1cy", "a\u00a0b\u2003c\u3000d", "ﬁne ligature",
    "http://www.example.com/path?q=1&r=2", "--->>> ?!?! ... ,,,", "", "   ", "\n\t",
    "'s 't 're 've 'm 'll 'd '", "tab\there", "ends with space ", "CamelCaseWordsHere",
    "x" * 200, "the " * 60, "1234567890" * 5, "مرحبا بالعالم", "नमस्ते दुनिया", "한국어 텍스트",
]
WORDS = ["the", "a", "photo", "of", "red", "green", "blue", "star", "heart", "cross",
         "square", "there", "their", "running", "interesting", "another", "hello", "world",
         "café", "naïve", "日本", "мир", "ελλάδα", "it's", "we'll", "DON'T", "!!", "...", "?!",
         "--", "12", "3.5", "🙂", "http://x.com", "www", "Über", "ÉCOLE", "straße", "ﬁ", "\u0301",
         "<|endoftext|>", "&amp;", "tion", "ing", "er", "zzz", "q", "#", "@user", "$100", "50%"]
SEPARATORS = [" ", "  ", "\t", "\n", "", " \u00a0", ", ", ". "]


def varied_strings(n=320, seed=0):
  rng = random.Random(seed)
  out = list(HANDWRITTEN)
  while len(out) < n:
    k = rng.randint(1, 30)
    text = "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(k))
    if rng.random() < 0.3:
      text = text.upper() if rng.random() < 0.5 else text.title()
    out.append(text)
  return out


@pytest.fixture(scope="module")
def tokenizers(vocab_dir):
  return CLIPTokenizer.from_pretrained(vocab_dir), bpe.BpeTokenizer.from_path(vocab_dir)


def test_vocab_matches_transformers(tokenizers):
  hf, ours = tokenizers
  assert ours.vocab_size == len(hf) == len(clip_vocab.merges_and_vocab()[1])
  assert (ours.bos_id, ours.eos_id) == (hf.bos_token_id, hf.eos_token_id)


def test_ids_equal_clip_tokenizer_on_varied_strings(tokenizers):
  hf, ours = tokenizers
  texts = varied_strings()
  assert len(texts) >= 300
  expected = hf(texts)["input_ids"]
  for text, ids in zip(texts, expected):
    assert [ours.bos_id] + ours.ids(text) + [ours.eos_id] == ids, repr(text)
  # Long texts are common among them: truncation is exercised below.
  assert sum(len(ids) > 77 for ids in expected) >= 5


@pytest.mark.parametrize("max_len", [2, 5, 16, 77])
def test_fixed_length_rows_equal_clip_tokenizer_with_truncation(tokenizers, max_len):
  hf, ours = tokenizers
  texts = varied_strings(120, seed=max_len)
  expected = hf(texts, max_length=max_len, truncation=True, padding="max_length",
                return_tensors="np")
  rows = ours.encode(texts, max_len)
  assert rows.dtype == np.int32 and rows.shape == (len(texts), max_len)
  # CLIPTokenizer pads with <|endoftext|>, lang_image with pad_id (0): compare the real tokens.
  mask = expected["attention_mask"].astype(bool)
  np.testing.assert_array_equal(np.where(mask, rows, -1), np.where(mask, expected["input_ids"], -1))
  assert np.all(rows[~mask] == ours.pad_id)
  ends = mask.sum(axis=1) - 1
  assert np.all(rows[np.arange(len(texts)), ends] == ours.eos_id)  # kept last when truncated
  same_padding = bpe.BpeTokenizer.from_path(hf.name_or_path, pad_id=ours.eos_id)
  np.testing.assert_array_equal(same_padding.encode(texts, max_len), expected["input_ids"])


def test_openai_merges_file_gives_the_same_vocabulary(vocab_dir, tokenizers):
  _, ours = tokenizers
  gz = bpe.BpeTokenizer.from_path(os.path.join(vocab_dir, "bpe_simple_vocab.txt.gz"))
  assert gz.encoder == ours.encoder and gz.merges == ours.merges
  texts = varied_strings(60, seed=3)
  np.testing.assert_array_equal(gz.encode(texts, 40), ours.encode(texts, 40))


def test_loaded_through_the_data_tokenizer_interface(vocab_dir, tmp_path):
  tok = tokenizer_lib.load(vocab_dir)
  assert isinstance(tok, bpe.BpeTokenizer)
  rows = tok.encode(["a red star.", b"one blue heart"], 12)
  assert tok.decode(rows) == ["a red star .", "one blue heart"]
  tok.save(str(tmp_path))
  again = CLIPTokenizer.from_pretrained(str(tmp_path))
  first_row = rows[0].tolist()
  assert again("a red star.")["input_ids"] == first_row[:first_row.index(tok.eos_id) + 1]


def test_bad_vocabulary_paths_get_one_sentence(tmp_path):
  with pytest.raises(ValueError, match="holds no vocab.json and merges.txt"):
    bpe.BpeTokenizer.from_path(str(tmp_path))
  with pytest.raises(ValueError, match="does not exist"):
    bpe.BpeTokenizer.from_path(str(tmp_path / "missing.txt.gz"))
