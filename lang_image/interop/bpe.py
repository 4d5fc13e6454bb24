"""CLIP's byte-level BPE tokenizer, giving the ids of transformers' `CLIPTokenizer`.

Vocabulary, from either of the files CLIP models ship with:
  - a folder with `vocab.json` (token -> id) and `merges.txt` (one "left right" pair per line,
    best first, after a "#version" line): Hugging Face model folders;
  - `bpe_simple_vocab_16e6.txt.gz` (OpenAI CLIP, open_clip): the merges only. The ids are then
    the 256 byte symbols, the same symbols ending a word ("</w>" appended), one token per merge
    in merge order, then <|startoftext|> and <|endoftext|>: 49408 ids for CLIP's 48894 merges.

Encoding one text:
  1. "<|startoftext|>" and "<|endoftext|>" written in the raw text become their ids;
  2. every other span is cleaned: Unicode NFC, each run of whitespace -> one space, lowercase
     (character by character);
  3. it is cut into pieces (whitespace separates and is dropped): a contraction 's 't 're 've
     'm 'll 'd, a run of letters, one digit, or a run of other symbols (a piece spelling a
     special token is split again into "<|", its letters, "|>");
  4. each piece's UTF-8 bytes become printable symbols (GPT-2's byte-to-unicode table), the last
     symbol gets the "</w>" suffix, and the adjacent pair that comes first in the merge list is
     merged, again and again, until no pair is in the list; the symbols are then ids, and a
     symbol outside the vocabulary becomes <|endoftext|>'s id (the unknown token).
Rows of `encode` are <|startoftext|>, the ids, <|endoftext|>, then `pad_id`; a long text keeps
its first max_len - 2 ids, so <|endoftext|> stays last.

The padding id defaults to 0 as in OpenAI's and open_clip's `tokenize` (CLIPTokenizer pads with
<|endoftext|>): imported towers pool at the end-of-text token ("argmax"/"eos"), where the pad id
does not matter. Id 0 is also the token "!", so pooling over non-pad tokens ("mean") or
non-causal attention would treat a "!" as padding.

OpenAI's own tokenizer also repairs text with ftfy and unescapes HTML entities; transformers'
does neither, and neither does this one.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import unicodedata

import numpy as np

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# CLIP's vocabulary: the merges that open_clip's and OpenAI's tokenizer read from the file.
OPENAI_MERGES = 49152 - 256 - 2
# Unicode White_Space: what `\s` matches in the tokenizers library's regular expressions.
WHITESPACE = frozenset(
    [chr(c) for c in range(0x09, 0x0E)] + [" ", "\x85", "\xa0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"])


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's table from the 256 byte values to printable characters: printable Latin-1 bytes
  map to themselves, the others to U+0100 onwards, in byte order."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in printable:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def _is_letter(c: str) -> bool:
  return unicodedata.category(c).startswith("L")


def _is_number(c: str) -> bool:
  return unicodedata.category(c).startswith("N")


def clean(text: str) -> str:
  """NFC, whitespace runs -> one space, lowercase character by character."""
  text = unicodedata.normalize("NFC", text)
  out, in_space = [], False
  for c in text:
    if c in WHITESPACE:
      if not in_space:
        out.append(" ")
      in_space = True
    else:
      out.append(c.lower())
      in_space = False
  return "".join(out)


def pieces(text: str) -> list[str]:
  """Cuts cleaned text into the pieces that BPE sees (step 3 of the module docstring)."""
  out, i, n = [], 0, len(text)
  while i < n:
    special = next((s for s in (SOT, EOT) if text.startswith(s, i)), None)
    if special is not None:
      out += ["<|", special[2:-2], "|>"]
      i += len(special)
      continue
    if text[i] == "'":
      contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
      if contraction is not None:
        out.append(contraction)
        i += len(contraction)
        continue
    c = text[i]
    if c in WHITESPACE:
      i += 1
      continue
    if _is_number(c):
      out.append(c)
      i += 1
      continue
    j = i + 1
    if _is_letter(c):
      while j < n and _is_letter(text[j]):
        j += 1
    else:
      while j < n and not (text[j] in WHITESPACE or _is_letter(text[j]) or _is_number(text[j])):
        j += 1
    out.append(text[i:j])
    i = j
  return out


class BpeTokenizer:
  """CLIP BPE with lang_image's Tokenizer interface: `encode(texts, max_len)` -> int32 rows."""

  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *, pad_id: int = 0,
               source: str = ""):
    for token in (SOT, EOT):
      if token not in vocab:
        where = f" '{source}'" if source else ""
        raise ValueError(f"the BPE vocabulary{where} has no {token} token; CLIP "
                         "vocabularies end with <|startoftext|> and <|endoftext|>.")
    self.model_path = source
    self.encoder = dict(vocab)
    self.decoder = {i: t for t, i in self.encoder.items()}
    self.ranks = {pair: rank for rank, pair in enumerate(merges)}
    self.merges = list(merges)
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
    self.bos_id = self.encoder[SOT]
    self._eos_id = self.encoder[EOT]
    self._pad_id = int(pad_id)
    self._cache: dict[str, list[int]] = {}

  @classmethod
  def from_path(cls, path: str, pad_id: int = 0) -> BpeTokenizer:
    """From a folder with vocab.json and merges.txt, or from a merges file (.txt or .txt.gz,
    OpenAI's layout: a header line, then merges)."""
    if os.path.isdir(path):
      vocab_path, merges_path = (os.path.join(path, n) for n in ("vocab.json", "merges.txt"))
      if not (os.path.isfile(vocab_path) and os.path.isfile(merges_path)):
        raise ValueError(f"'{path}' holds no vocab.json and merges.txt; point the tokenizer "
                         "at a Hugging Face CLIP folder or at bpe_simple_vocab_16e6.txt.gz.")
      with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
      return cls(vocab, read_merges(merges_path), pad_id=pad_id, source=path)
    if not os.path.isfile(path):
      raise ValueError(f"BPE vocabulary '{path}' does not exist; point the tokenizer at a "
                       "Hugging Face CLIP folder or at bpe_simple_vocab_16e6.txt.gz.")
    merges = read_merges(path)[:OPENAI_MERGES]
    return cls(openai_vocab(merges), merges, pad_id=pad_id, source=path)

  @property
  def vocab_size(self) -> int:
    return len(self.encoder)

  @property
  def pad_id(self) -> int:
    return self._pad_id

  @property
  def eos_id(self) -> int:
    return self._eos_id

  def _bpe(self, piece: str) -> list[int]:
    if piece in self._cache:
      return self._cache[piece]
    symbols = [self.byte_encoder[b] for b in piece.encode("utf-8")]
    symbols[-1] += END_OF_WORD
    while len(symbols) > 1:
      pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
          merged.append(symbols[i] + symbols[i + 1])
          i += 2
        else:
          merged.append(symbols[i])
          i += 1
      symbols = merged
    ids = [self.encoder.get(s, self._eos_id) for s in symbols]
    if len(self._cache) < 100_000:
      self._cache[piece] = ids
    return ids

  def ids(self, text: str) -> list[int]:
    """The ids of one text, without <|startoftext|>, <|endoftext|> or truncation."""
    out = []
    for span in _split_special(text):
      if span in (SOT, EOT):
        out.append(self.encoder[span])
      else:
        for piece in pieces(clean(span)):
          out += self._bpe(piece)
    return out

  def encode(self, texts: list[str] | str, max_len: int) -> np.ndarray:
    """int32 [N, max_len]: <|startoftext|>, ids, <|endoftext|>, then padding."""
    if max_len < 2:
      raise ValueError(f"max_len must be at least 2 for CLIP's start and end tokens, got "
                       f"{max_len}.")
    if isinstance(texts, (str, bytes)):
      texts = [texts]
    out = np.full((len(texts), max_len), self._pad_id, np.int32)
    for row, text in zip(out, texts):
      text = text.decode("utf-8") if isinstance(text, bytes) else text
      ids = [self.bos_id] + self.ids(text)[:max_len - 2] + [self._eos_id]
      row[:len(ids)] = ids
    return out

  def decode(self, ids) -> list[str]:
    """Texts of [N, L] (or one [L]) id rows, each read up to its <|endoftext|>."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
      ids = ids[None]
    texts = []
    for row in ids.tolist():
      tokens = []
      for i in row:
        if i == self._eos_id:
          break
        if i != self.bos_id:
          tokens.append(self.decoder.get(i, ""))
      spaced = "".join(tokens).replace(END_OF_WORD, " ")
      raw = bytearray()
      for c in spaced:
        raw += b" " if c == " " else bytes([self.byte_decoder.get(c, ord("?"))])
      texts.append(raw.decode("utf-8", errors="replace").strip())
    return texts

  def save(self, directory: str) -> None:
    """Writes vocab.json and merges.txt, the files transformers' CLIPTokenizer reads."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
      json.dump(self.encoder, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
      f.write("#version: 0.2\n")
      f.writelines(f"{a} {b}\n" for a, b in self.merges)


def _split_special(text: str) -> list[str]:
  """Raw text -> spans, each either a special token or text between them."""
  spans, i = [], 0
  while True:
    hits = [(text.find(s, i), s) for s in (SOT, EOT)]
    hits = [(at, s) for at, s in hits if at >= 0]
    if not hits:
      break
    at, special = min(hits)
    if at > i:
      spans.append(text[i:at])
    spans.append(special)
    i = at + len(special)
  if i < len(text):
    spans.append(text[i:])
  return spans


def read_merges(path: str) -> list[tuple[str, str]]:
  """Merge pairs from merges.txt or bpe_simple_vocab_16e6.txt(.gz); the first line, a version
  header in both, is skipped."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    lines = f.read().split("\n")
  merges = []
  for number, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 2:
      raise ValueError(f"line {number} of '{path}' is not a merge 'left right': {line!r}.")
    merges.append((parts[0], parts[1]))
  return merges


def openai_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
  """The ids OpenAI's tokenizer gives: bytes, bytes + "</w>", one per merge, then the two
  special tokens."""
  symbols = list(bytes_to_unicode().values())
  tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges]
  tokens += [SOT, EOT]
  return {t: i for i, t in enumerate(tokens)}
