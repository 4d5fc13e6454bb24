"""A small CLIP-style BPE vocabulary, built without training or downloads.

The layout is CLIP's: the 256 byte symbols, the same with "</w>", one token per merge, then
<|startoftext|> and <|endoftext|>. The merges spell out a fixed word list symbol by symbol (plus
common pairs first), so that merges compete for the same symbols as in a trained vocabulary.
"""

import gzip
import json
import os

from lang_image.interop import bpe

COMMON_PAIRS = ["t h", "h e", "i n", "e r", "a n", "r e", "o n", "e n", "a t", "o u", "s t",
                "h e</w>", "i s</w>", "e d</w>", "n g", "i t", "o r", "e s", "a l", "n d</w>"]
WORDS = ["the", "a", "photo", "of", "dog", "cat", "there", "their", "red", "green", "blue",
         "square", "circle", "star", "heart", "cross", "left", "right", "top", "bottom",
         "corner", "small", "large", "tiny", "picture", "image", "painting", "sketch", "in",
         "on", "and", "is", "it", "this", "that", "with", "going", "running", "string",
         "interesting", "other", "another", "hello", "world", "naïve", "café", "über",
         "straße", "日本", "東京", "привет", "мир", "ελλάδα", "'s", "'t", "'ll", "!!", "...",
         "?!", "--", "12", "emoji", "🙂", "http", "://", ".com", "www", "ing", "tion", "er",
         "orange", "yellow", "cyan", "purple", "pink", "triangle", "one", "drawing", "plain",
         "background", "."]


def merges_and_vocab():
  table = bpe.bytes_to_unicode()
  merges, tokens = [], set()
  symbols = list(table.values())
  tokens.update(symbols)
  tokens.update(s + "</w>" for s in symbols)

  def add(a, b):
    if (a, b) not in merges and a + b not in tokens and a in tokens and b in tokens:
      merges.append((a, b))
      tokens.add(a + b)

  for pair in COMMON_PAIRS:
    add(*pair.split(" "))
  for word in WORDS:
    mapped = [table[x] for x in word.encode("utf-8")]
    for end in (True, False):
      syms = mapped[:-1] + [mapped[-1] + "</w>"] if end else list(mapped)
      current = syms[0]
      for s in syms[1:]:
        add(current, s)
        current += s
  return merges, bpe.openai_vocab(merges)


def write(directory):
  """Writes vocab.json + merges.txt (a Hugging Face folder) and bpe_simple_vocab.txt.gz (the
  OpenAI layout) into `directory`; returns the path of the .txt.gz."""
  merges, vocab = merges_and_vocab()
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  lines = "".join(f"{a} {b}\n" for a, b in merges)
  with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + lines)
  gz = os.path.join(directory, "bpe_simple_vocab.txt.gz")
  with gzip.open(gz, "wt", encoding="utf-8") as f:
    f.write("bpe_simple_vocab.txt#version: 0.2\n" + lines)
  return gz
