"""Two-tower (image/text) models in Flax NNX."""

from lang_image.models.layers import Encoder
from lang_image.models.text import TextTransformer
from lang_image.models.two_tower import TwoTower, build_two_tower, l2_normalize
from lang_image.models.variants import (
    TEXT_SIZES,
    VIT_SIZES,
    TextSpec,
    VitSpec,
    parse_text,
    parse_vit,
)
from lang_image.models.vit import VisionTransformer

__all__ = [
    "Encoder",
    "TEXT_SIZES",
    "TextSpec",
    "TextTransformer",
    "TwoTower",
    "VIT_SIZES",
    "VisionTransformer",
    "VitSpec",
    "build_two_tower",
    "l2_normalize",
    "parse_text",
    "parse_vit",
]
