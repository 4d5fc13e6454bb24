"""OpenAI CLIP / open_clip ViT state_dicts -> lang_image towers.

Files: OpenAI's released TorchScript `.pt`, a state_dict saved with torch.save (`.pt`, `.bin`,
an open_clip training checkpoint {"state_dict": ...}), or `.safetensors`.

Names (OpenAI <- lang_image, i = block index):
  visual.conv1.weight                          image.patch_embed.kernel (conv layout; no bias)
  visual.class_embedding                       image.cls_token
  visual.positional_embedding                  image.pos_embed
  visual.ln_pre.{weight,bias}                  image.ln_pre.{scale,bias}
  visual.transformer.resblocks.i.*             image.encoder.blocks.i.*:
      ln_1 / ln_2                                  ln1 / ln2
      attn.in_proj_{weight,bias}                   attn.qkv (weight transposed: [q | k | v])
      attn.out_proj                                attn.out
      mlp.c_fc / mlp.c_proj                        mlp.fc1 / mlp.fc2
  visual.ln_post                               image.encoder.ln_final
  visual.proj [width, embed]                   image_proj.kernel (already [in, out])
  token_embedding.weight                       text.token_embed.embedding
  positional_embedding                         text.pos_embed
  transformer.resblocks.i.*                    text.encoder.blocks.i.* (as above)
  ln_final                                     text.encoder.ln_final
  text_projection [width, embed]               text_proj.kernel
  logit_scale                                  logit_scale

Shapes give the widths, depths, MLP widths, patch and image size, context length and vocabulary.
The rest comes from open_clip_config.json beside the weights file when there is one (open_clip's
layout: {"model_cfg": {"quick_gelu", "vision_cfg": {"head_width"}, "text_cfg": {"heads"}},
"preprocess_cfg": {"mean", "std"}}); without it, OpenAI's conventions: 64-wide attention heads,
QuickGELU and CLIP's pixel statistics. The text tower pools at the largest token id, where
CLIP's tokenizer puts <|endoftext|>.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from lang_image.interop import architecture
from lang_image.interop.architecture import ClipArchitecture, linear, patch_kernel
from lang_image.interop.tensors import CheckpointError, open_files
from lang_image.models.variants import TextSpec, VitSpec

SIDECAR = "open_clip_config.json"
HEAD_WIDTH = 64
# Entries of OpenAI's TorchScript state_dicts that are settings, not parameters.
IGNORED = ("input_resolution", "context_length", "vocab_size")
# open_clip options that change what the towers compute, with the value lang_image models.
VISION_OPTIONS = dict(timm_model_name=None, attentional_pool=False, no_ln_pre=False,
                      final_ln_after_pool=False, pool_type="tok", proj_bias=False,
                      ls_init_value=None, input_patchnorm=False, global_average_pool=False)
TEXT_OPTIONS = dict(hf_model_name=None, pool_type="argmax", no_causal_mask=False,
                    final_ln_after_pool=False, proj_bias=False, ls_init_value=None,
                    embed_cls=False, attn_mask=True)


def _blocks(names: set[str], prefix: str) -> int:
  pattern = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.attn\.in_proj_weight$")
  found = sorted(int(m[1]) for m in map(pattern.match, names) if m)
  if found != list(range(len(found))):
    raise CheckpointError(f"the blocks under '{prefix}resblocks' are not numbered 0..n-1.")
  return len(found)


def _sidecar(path: str) -> dict:
  sidecar = os.path.join(os.path.dirname(os.path.abspath(path)), SIDECAR)
  if not os.path.isfile(sidecar):
    return {}
  try:
    with open(sidecar, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read '{sidecar}' ({e}).") from None


def _check_options(cfg: dict, defaults: dict, tower: str) -> None:
  for key, modelled in defaults.items():
    value = cfg.get(key, modelled)
    if value != modelled and not (modelled in (None, False, 0.0) and not value):
      raise CheckpointError(f"open_clip's {tower} option {key}={value!r} is not supported; "
                            f"lang_image's CLIP towers model {key}={modelled!r}.")


def read_architecture(path: str, tensors=None) -> ClipArchitecture:
  tensors = tensors or open_files([path])
  names = tensors.names()
  if any(n.startswith("visual.layer1.") for n in names):
    raise CheckpointError(f"'{path}' has a ResNet image tower (visual.layer1...); only ViT "
                          "image towers can be imported.")
  for needed in ("visual.conv1.weight", "visual.positional_embedding", "visual.proj",
                 "token_embedding.weight", "positional_embedding", "ln_final.weight",
                 "text_projection"):
    if needed not in names:
      raise CheckpointError(f"'{path}' lacks '{needed}', which an OpenAI-layout CLIP ViT "
                            "state_dict has; for a Hugging Face folder use hf:.")
  config = _sidecar(path)
  model_cfg = config.get("model_cfg", {})
  vision_cfg, text_cfg = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
  _check_options(vision_cfg, VISION_OPTIONS, "vision_cfg")
  _check_options(text_cfg, TEXT_OPTIONS, "text_cfg")
  conv = tensors.shape("visual.conv1.weight")
  if conv[1] != 3 or conv[2] != conv[3]:
    raise CheckpointError(f"visual.conv1.weight has shape {conv}; lang_image needs square "
                          "patches over 3 channels.")
  width, patch = conv[0], conv[-1]
  tokens = tensors.shape("visual.positional_embedding")[0]
  grid = int(round((tokens - 1) ** 0.5))
  if grid * grid + 1 != tokens:
    raise CheckpointError(f"visual.positional_embedding has {tokens} rows, not a square grid "
                          "of patches plus a class token.")
  text_width = tensors.shape("ln_final.weight")[0]
  vision_heads = width // int(vision_cfg.get("head_width", HEAD_WIDTH))
  text_heads = int(text_cfg.get("heads", text_width // HEAD_WIDTH))
  if vision_heads < 1 or text_heads < 1:
    raise CheckpointError(f"cannot tell the attention heads of '{path}' (widths {width} and "
                          f"{text_width} are narrower than {HEAD_WIDTH}); give them in "
                          f"{SIDECAR} beside it (vision_cfg.head_width, text_cfg.heads).")
  norm_eps = {float(c.get("norm_kwargs", {}).get("eps", 1e-5)) for c in (vision_cfg, text_cfg)}
  if len(norm_eps) > 1:
    raise CheckpointError("the towers use different LayerNorm epsilons; lang_image uses one.")
  return ClipArchitecture(
      image=VitSpec(width, _blocks(names, "visual.transformer."), vision_heads,
                    tensors.shape("visual.transformer.resblocks.0.mlp.c_fc.weight")[0], patch),
      image_size=patch * grid,
      text=TextSpec(text_width, _blocks(names, "transformer."), text_heads,
                    tensors.shape("transformer.resblocks.0.mlp.c_fc.weight")[0]),
      context_length=tensors.shape("positional_embedding")[0],
      vocab_size=tensors.shape("token_embedding.weight")[0],
      embed_dim=tensors.shape("text_projection")[1],
      act=_activation(config),
      ln_eps=norm_eps.pop(), text_pool="argmax",
      image_norm=_image_norm(config.get("preprocess_cfg", {})))


def _activation(config: dict) -> str:
  """OpenAI's models use QuickGELU; open_clip's default is GELU unless its config says
  quick_gelu."""
  if not config:
    return "quick_gelu"
  return "quick_gelu" if config.get("model_cfg", {}).get("quick_gelu", False) else "gelu"


def _image_norm(preprocess_cfg: dict) -> str:
  return architecture.image_norm_named(preprocess_cfg.get("mean"), preprocess_cfg.get("std"),
                                      SIDECAR)


def _block(prefix: str) -> dict[tuple, tuple[str, bool]]:
  """lang_image block path -> (OpenAI name, whether it is a torch Linear weight)."""
  return {("ln1", "scale"): (f"{prefix}.ln_1.weight", False),
          ("ln1", "bias"): (f"{prefix}.ln_1.bias", False),
          ("attn", "qkv", "kernel"): (f"{prefix}.attn.in_proj_weight", True),
          ("attn", "qkv", "bias"): (f"{prefix}.attn.in_proj_bias", False),
          ("attn", "out", "kernel"): (f"{prefix}.attn.out_proj.weight", True),
          ("attn", "out", "bias"): (f"{prefix}.attn.out_proj.bias", False),
          ("ln2", "scale"): (f"{prefix}.ln_2.weight", False),
          ("ln2", "bias"): (f"{prefix}.ln_2.bias", False),
          ("mlp", "fc1", "kernel"): (f"{prefix}.mlp.c_fc.weight", True),
          ("mlp", "fc1", "bias"): (f"{prefix}.mlp.c_fc.bias", False),
          ("mlp", "fc2", "kernel"): (f"{prefix}.mlp.c_proj.weight", True),
          ("mlp", "fc2", "bias"): (f"{prefix}.mlp.c_proj.bias", False)}


def names(arch: ClipArchitecture) -> dict[tuple, tuple[str, bool]]:
  """lang_image path -> (OpenAI name, transposed), for every parameter but the patch stem."""
  out = {("image", "cls_token"): ("visual.class_embedding", False),
         ("image", "pos_embed"): ("visual.positional_embedding", False),
         ("image", "ln_pre", "scale"): ("visual.ln_pre.weight", False),
         ("image", "ln_pre", "bias"): ("visual.ln_pre.bias", False),
         ("image", "encoder", "ln_final", "scale"): ("visual.ln_post.weight", False),
         ("image", "encoder", "ln_final", "bias"): ("visual.ln_post.bias", False),
         ("image_proj", "kernel"): ("visual.proj", False),
         ("text", "token_embed", "embedding"): ("token_embedding.weight", False),
         ("text", "pos_embed"): ("positional_embedding", False),
         ("text", "encoder", "ln_final", "scale"): ("ln_final.weight", False),
         ("text", "encoder", "ln_final", "bias"): ("ln_final.bias", False),
         ("text_proj", "kernel"): ("text_projection", False),
         ("logit_scale",): ("logit_scale", False)}
  for tower, prefix, depth in (("image", "visual.transformer", arch.image.depth),
                               ("text", "transformer", arch.text.depth)):
    for i in range(depth):
      for path, entry in _block(f"{prefix}.resblocks.{i}").items():
        out[(tower, "encoder", "blocks", i) + path] = entry
  return out


def read(path: str) -> tuple[ClipArchitecture, dict[tuple, np.ndarray]]:
  """(architecture, flat {lang_image path: float32 array}) of an OpenAI-layout file."""
  tensors = open_files([path])
  arch = read_architecture(path, tensors)
  present = tensors.names()
  used = set(IGNORED)
  params = {}
  for target, (name, transposed) in names(arch).items():
    if name not in present:
      raise CheckpointError(f"'{path}' lacks '{name}', which a CLIP ViT of its shape has.")
    used.add(name)
    value = tensors.array(name)
    params[target] = linear(value) if transposed else value
  conv = tensors.array("visual.conv1.weight")
  used.add("visual.conv1.weight")
  params[("image", "patch_embed", "kernel")] = patch_kernel(conv)
  params[("image", "patch_embed", "bias")] = np.zeros(conv.shape[0], np.float32)
  params[("logit_scale",)] = params[("logit_scale",)].reshape(())
  extra = sorted(present - used)
  if extra:
    raise CheckpointError(f"'{path}' has tensors lang_image's CLIP towers do not model, e.g. "
                          f"{extra[:3]}; supported: OpenAI-style ViT CLIP (class token, "
                          "pre-LN, no layer scale or attention pooling, no logit bias).")
  return arch, params
