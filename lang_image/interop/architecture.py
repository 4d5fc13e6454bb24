"""The CLIP tower shapes that checkpoints describe, and lang_image's towers built from them.

Imported towers are lang_image's own modules with OpenAI CLIP's choices switched on: a class
token pooled after the final LayerNorm, a LayerNorm before the first ViT block
(`image_pre_norm`), a bias-free patch projection (imported as a zero bias), a causal text
transformer pooled at the end-of-text token ("argmax" or "eos"), bias-free projections to the
joint space, QuickGELU or GELU, and CLIP's pixel statistics (`image_norm`).

Parameter layout (lang_image <- PyTorch): a Linear kernel is the transposed torch weight
[out, in] -> [in, out]; the fused qkv kernel holds q, k, v column blocks in that order, each
head-major, which is exactly OpenAI's `in_proj_weight.T`; the patch kernel [p*p*3, width] is the
conv weight [width, 3, p, p] reordered to (row, column, channel) rows.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
from flax import nnx

from lang_image.interop.tensors import CheckpointError
from lang_image.models import norms, two_tower, variants
from lang_image.models.pretrainer import IMAGE_NORMS
from lang_image.models.variants import TextSpec, VitSpec

ACTIVATIONS = ("gelu", "quick_gelu", "gelu_tanh")
TEXT_POOLS = ("argmax", "eos", "eot")


@dataclasses.dataclass(frozen=True)
class ClipArchitecture:
  """Everything needed to build towers that compute what the checkpoint's model computes."""
  image: VitSpec
  image_size: int
  text: TextSpec
  context_length: int
  vocab_size: int
  embed_dim: int
  act: str = "quick_gelu"
  ln_eps: float = norms.LN_EPS
  text_pool: str = "argmax"   # "argmax" (OpenAI), "eos" (HF: first eos_id) or "eot".
  eos_id: int | None = None
  image_norm: str = "clip"

  def __post_init__(self):
    if self.act not in ACTIVATIONS:
      raise CheckpointError(f"activation {self.act!r} is not supported; lang_image's towers "
                            f"use one of {list(ACTIVATIONS)}.")
    if self.text_pool not in TEXT_POOLS or (self.text_pool == "eos" and self.eos_id is None):
      raise CheckpointError(f"text pooling {self.text_pool!r} (eos id {self.eos_id}) is not "
                            f"supported; use one of {list(TEXT_POOLS)}, 'eos' with an id.")
    if self.image_norm not in IMAGE_NORMS:
      raise CheckpointError(f"image normalisation {self.image_norm!r} is not supported; "
                            f"known: {list(IMAGE_NORMS)}.")
    if self.image_size % self.image.patch:
      raise CheckpointError(f"image size {self.image_size} is not a multiple of the patch "
                            f"size {self.image.patch}.")
    for name, spec in (("image", self.image), ("text", self.text)):
      if spec.width % spec.heads:
        raise CheckpointError(f"the {name} tower's width {spec.width} is not divisible by its "
                              f"{spec.heads} attention heads.")

  def model_fields(self) -> dict:
    """The config.model fields that make lang_image build these towers."""
    fields = dict(
        image=variants.vit_name(self.image), text=variants.text_name(self.text),
        image_size=self.image_size, max_len=self.context_length, embed_dim=self.embed_dim,
        image_pool="cls", image_stem="patch", image_pre_norm=True, image_norm=self.image_norm,
        text_pool=self.text_pool, text_causal=True, act=self.act, ln_eps=self.ln_eps)
    if self.eos_id is not None:
      fields["eos_id"] = self.eos_id
    return fields

  def build(self, rngs: nnx.Rngs | None = None) -> two_tower.TwoTower:
    """Freshly initialised float32 towers of this shape."""
    cfg = ml_collections.ConfigDict(dict(self.model_fields(), dtype="float32",
                                         logit_scale_init=0.0))
    return two_tower.build_two_tower(cfg, self.vocab_size, rngs=rngs or nnx.Rngs(0))


def of_towers(towers: two_tower.TwoTower, eos_id: int | None = None,
              image_norm: str = "clip") -> ClipArchitecture:
  """The architecture of lang_image towers, or an error naming what CLIP models lack.

  `eos_id` is the tokenizer's end-of-text id, needed for towers that pool at the last non-pad
  token ("eot"); "eos" towers carry their own.
  """
  image, text = towers.image, towers.text
  missing = []
  if image.pool != "cls":
    missing.append(f"class-token pooling (image_pool='cls', not {image.pool!r})")
  if image.patch_embed is None:
    missing.append("a patch stem (image_stem='patch', not 'conv')")
  if image.ln_pre is None:
    missing.append("a LayerNorm before the first ViT block (image_pre_norm=True)")
  if not text.causal:
    missing.append("a causal text tower (text_causal=True)")
  if text.pool not in TEXT_POOLS:
    missing.append(f"end-of-text pooling (text_pool 'eot', 'eos' or 'argmax', not {text.pool!r})")
  if towers.logit_bias is not None:
    missing.append("no logit bias (CLIPModel has only a logit scale)")
  acts = {b.mlp.act for tower in (image, text) for b in tower.encoder.blocks}
  eps = {m.epsilon for _, m in nnx.iter_modules(towers) if isinstance(m, nnx.LayerNorm)}
  if missing:
    raise CheckpointError("these towers cannot be written as a CLIP model: it needs "
                          + "; ".join(missing) + ".")
  pool_eos = text.eos_id if text.pool == "eos" else eos_id
  if text.pool == "eot" and pool_eos is None:
    raise CheckpointError("towers pooled at the last non-pad token need the tokenizer's "
                          "end-of-text id to be written as a CLIP model; pass eos_id.")
  if len(acts) != 1 or len(eps) != 1:
    raise CheckpointError("these towers mix activations or LayerNorm epsilons, which a CLIP "
                          "model cannot express.")
  return ClipArchitecture(
      image=image.spec, image_size=image.image_size, text=text.spec,
      context_length=text.max_len, vocab_size=text.vocab_size, embed_dim=towers.embed_dim,
      act=acts.pop(), ln_eps=eps.pop(), text_pool=text.pool,
      eos_id=None if text.pool == "argmax" else pool_eos, image_norm=image_norm)


# --- layouts -------------------------------------------------------------------------------

def linear(weight: np.ndarray) -> np.ndarray:
  """torch Linear weight [out, in] -> kernel [in, out] (and back: it is its own inverse)."""
  return np.ascontiguousarray(weight.T)


def patch_kernel(conv_weight: np.ndarray) -> np.ndarray:
  """Conv weight [width, 3, p, p] -> patch kernel [p*p*3, width], rows in (row, column,
  channel) order as VisionTransformer.patchify flattens a patch."""
  width = conv_weight.shape[0]
  return np.ascontiguousarray(conv_weight.transpose(2, 3, 1, 0).reshape(-1, width))


def conv_weight(kernel: np.ndarray, patch: int) -> np.ndarray:
  """The inverse of `patch_kernel`."""
  width = kernel.shape[1]
  return np.ascontiguousarray(kernel.reshape(patch, patch, 3, width).transpose(3, 2, 0, 1))


def nest(flat: dict[tuple, np.ndarray]) -> dict:
  """{("image", "encoder", "blocks", 0, ...): array} -> nested dicts (nnx's pure dict)."""
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def flatten(tree: dict, prefix: tuple = ()) -> dict[tuple, np.ndarray]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def tower_params(towers: two_tower.TwoTower) -> dict[tuple, np.ndarray]:
  """Flat {path: float32 array} of the towers' parameters."""
  pure = nnx.to_pure_dict(nnx.state(towers, nnx.Param))
  return {path: np.asarray(value, np.float32) for path, value in flatten(pure).items()}


def check_against(expected: dict[tuple, tuple], got: dict[tuple, np.ndarray], source: str
                  ) -> None:
  """Raises one sentence if `got` lacks a parameter of `expected` or has another shape."""
  for path, shape in expected.items():
    name = ".".join(map(str, path))
    if path not in got:
      raise CheckpointError(f"{source} gives no value for the parameter {name}.")
    if tuple(got[path].shape) != tuple(shape):
      raise CheckpointError(f"{source} gives {name} the shape {tuple(got[path].shape)}, but "
                            f"the model has {tuple(shape)}.")
  extra = sorted(".".join(map(str, p)) for p in set(got) - set(expected))
  if extra:
    raise CheckpointError(f"{source} has parameters the model lacks: {extra[:4]}.")


def image_norm_named(mean, std, where: str) -> str:
  """The IMAGE_NORMS entry with this pixel mean and std ('clip' when either is absent)."""
  if mean is None or std is None:
    return "clip"
  for name, (m, s) in IMAGE_NORMS.items():
    if np.allclose(mean, m, atol=1e-6) and np.allclose(std, s, atol=1e-6):
      return name
  raise CheckpointError(f"pixel mean {mean} / std {std} in {where} match none of the known "
                        f"normalisations {list(IMAGE_NORMS)}.")
