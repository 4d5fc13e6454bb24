"""Variant strings -> tower sizes."""

import pytest

from lang_image.models import variants


@pytest.mark.parametrize("name, expected", [
    ("B/16", (768, 12, 12, 3072, 16)),
    ("So400m/14", (1152, 27, 16, 4304, 14)),
    ("mu/8", (128, 4, 4, 512, 8)),
    ("L/14", (1024, 24, 16, 4096, 14)),
    ("Ti/32", (192, 12, 3, 768, 32)),
    ("g/14", (1408, 40, 16, 6144, 14)),
    (" S/7 ", (384, 12, 6, 1536, 7)),
])
def test_parse_vit(name, expected):
  spec = variants.parse_vit(name)
  assert (spec.width, spec.depth, spec.heads, spec.mlp_dim, spec.patch) == expected


@pytest.mark.parametrize("name, expected", [
    ("B", (512, 12, 8, 2048)),
    ("mu", (128, 4, 4, 512)),
    ("L", (768, 12, 12, 3072)),
    ("So400m", (1152, 27, 16, 4304)),
    ("H", (1024, 24, 16, 4096)),
])
def test_parse_text(name, expected):
  spec = variants.parse_text(name)
  assert (spec.width, spec.depth, spec.heads, spec.mlp_dim) == expected


def test_every_size_has_whole_heads_and_a_text_tower():
  for table in (variants.VIT_SIZES, variants.TEXT_SIZES):
    for width, _, heads, _ in table.values():
      assert width % heads == 0
  # Configs pick the text tower by the image tower's size name.
  assert set(variants.VIT_SIZES) <= set(variants.TEXT_SIZES)


KNOWN = "mu, Ti, S, M, B, L, So400m, H, g"


@pytest.mark.parametrize("name", ["X/16", "B", "B/x", "", "B/16/2", "b/16", None])
def test_bad_vit_names_list_known_sizes(name):
  with pytest.raises(ValueError, match=KNOWN):
    variants.parse_vit(name)


def test_zero_patch_rejected():
  with pytest.raises(ValueError, match="positive"):
    variants.parse_vit("B/0")


@pytest.mark.parametrize("name", ["X", "B/16", "", None])
def test_bad_text_names_list_known_sizes(name):
  with pytest.raises(ValueError, match=KNOWN):
    variants.parse_text(name)
