"""Hugging Face transformers `CLIPModel` folders <-> lang_image towers.

A folder holds config.json (model_type "clip", with text_config and vision_config) and the
weights: model.safetensors, pytorch_model.bin, or either split into shards with an
*.index.json; preprocessor_config.json, when present, gives the pixel mean and std.

Names (HF <- lang_image, i = block index; Linear weights are transposed, see architecture.py):
  vision_model.embeddings.patch_embedding.weight     image.patch_embed.kernel (conv layout)
  vision_model.embeddings.class_embedding            image.cls_token
  vision_model.embeddings.position_embedding.weight  image.pos_embed
  vision_model.pre_layrnorm.{weight,bias}            image.ln_pre.{scale,bias}
  vision_model.encoder.layers.i.*                    image.encoder.blocks.i.*:
      layer_norm1 / layer_norm2                          ln1 / ln2
      self_attn.{q,k,v}_proj                             attn.qkv (q, k, v column blocks)
      self_attn.out_proj                                 attn.out
      mlp.fc1 / mlp.fc2                                  mlp.fc1 / mlp.fc2
  vision_model.post_layernorm                        image.encoder.ln_final (CLIP normalises
                                                     the class token only; a per-token norm
                                                     pooled at the class token is the same)
  visual_projection.weight                           image_proj.kernel
  text_model.embeddings.token_embedding.weight       text.token_embed.embedding
  text_model.embeddings.position_embedding.weight    text.pos_embed
  text_model.encoder.layers.i.*                      text.encoder.blocks.i.* (as above)
  text_model.final_layer_norm                        text.encoder.ln_final
  text_projection.weight                             text_proj.kernel
  logit_scale                                        logit_scale

The text tower pools where HF's CLIPTextModel does: at the first `eos_token_id` of each row
("eos"), or at the largest id when eos_token_id is 2 (configs written before transformers
fixed that id; "argmax"). lang_image's own "eot" towers (pooled at the last non-pad token)
export with the tokenizer's end-of-text id, which ends every row before the padding, so
transformers pools at the same place. The patch projection has no bias in CLIP: it imports
as zero, and a lang_image patch bias exports folded into the patch tokens' position
embeddings (the class token gets none), which computes the same.
"""

from __future__ import annotations

import json
import os

import numpy as np

from lang_image.interop import architecture
from lang_image.interop.architecture import ClipArchitecture, conv_weight, linear, patch_kernel
from lang_image.interop.tensors import CheckpointError, open_files, require
from lang_image.models.pretrainer import IMAGE_NORMS
from lang_image.models.variants import TextSpec, VitSpec

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# transformers' defaults for fields a config.json may leave out (CLIPTextConfig,
# CLIPVisionConfig, CLIPConfig).
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                     num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                     hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407,
                     bos_token_id=49406, pad_token_id=1)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5)
HF_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh"}
EXPORT_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
# Buffers some transformers versions saved with the weights; they carry no parameters.
IGNORED = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read '{path}' ({e}); a Hugging Face CLIP folder needs a "
                          "valid config.json.") from None


def weight_paths(directory: str) -> list[str]:
  """The weight files of a model folder, shards included."""
  for name in WEIGHT_FILES:
    index = os.path.join(directory, name + ".index.json")
    if os.path.isfile(index):
      shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
      return [os.path.join(directory, s) for s in shards]
    if os.path.isfile(os.path.join(directory, name)):
      return [os.path.join(directory, name)]
  raise CheckpointError(f"'{directory}' holds no weights; a Hugging Face CLIP folder has "
                        f"{' or '.join(WEIGHT_FILES)} (or their sharded .index.json).")


def read_architecture(directory: str) -> ClipArchitecture:
  """The towers' shape from config.json (and preprocessor_config.json)."""
  if not os.path.isdir(directory):
    raise CheckpointError(f"'{directory}' is not a folder; hf: takes a Hugging Face CLIP model "
                          "folder (config.json + model.safetensors).")
  config = _read_json(os.path.join(directory, "config.json"))
  if config.get("model_type") != "clip":
    raise CheckpointError(f"'{directory}' holds a {config.get('model_type')!r} model; only "
                          "transformers' CLIPModel (model_type 'clip') can be imported.")
  text = {**TEXT_DEFAULTS, **(config.get("text_config") or {})}
  vision = {**VISION_DEFAULTS, **(config.get("vision_config") or {})}
  if vision["num_channels"] != 3:
    raise CheckpointError(f"the vision tower takes {vision['num_channels']} channels; "
                          "lang_image's takes RGB (3).")
  acts = {HF_ACTS.get(text["hidden_act"]), HF_ACTS.get(vision["hidden_act"])}
  if None in acts or len(acts) > 1:
    raise CheckpointError(f"activations text={text['hidden_act']!r}, "
                          f"vision={vision['hidden_act']!r} are not supported; lang_image "
                          f"uses one of {sorted(HF_ACTS)} for both towers.")
  if text["layer_norm_eps"] != vision["layer_norm_eps"]:
    raise CheckpointError("the towers use different LayerNorm epsilons "
                          f"({text['layer_norm_eps']}, {vision['layer_norm_eps']}); "
                          "lang_image uses one for both.")
  eos = int(text["eos_token_id"])
  return ClipArchitecture(
      image=VitSpec(vision["hidden_size"], vision["num_hidden_layers"],
                    vision["num_attention_heads"], vision["intermediate_size"],
                    vision["patch_size"]),
      image_size=int(vision["image_size"]),
      text=TextSpec(text["hidden_size"], text["num_hidden_layers"],
                    text["num_attention_heads"], text["intermediate_size"]),
      context_length=int(text["max_position_embeddings"]),
      vocab_size=int(text["vocab_size"]),
      embed_dim=int(config.get("projection_dim", 512)),
      act=acts.pop(), ln_eps=float(text["layer_norm_eps"]),
      text_pool="argmax" if eos == 2 else "eos", eos_id=None if eos == 2 else eos,
      image_norm=_image_norm(directory))


def _image_norm(directory: str) -> str:
  path = os.path.join(directory, "preprocessor_config.json")
  if not os.path.isfile(path):
    return "clip"
  pre = _read_json(path)
  return architecture.image_norm_named(pre.get("image_mean"), pre.get("image_std"), f"'{path}'")


def _block_names(prefix: str) -> dict[tuple, str]:
  return {("ln1", "scale"): f"{prefix}.layer_norm1.weight",
          ("ln1", "bias"): f"{prefix}.layer_norm1.bias",
          ("attn", "out", "kernel"): f"{prefix}.self_attn.out_proj.weight",
          ("attn", "out", "bias"): f"{prefix}.self_attn.out_proj.bias",
          ("ln2", "scale"): f"{prefix}.layer_norm2.weight",
          ("ln2", "bias"): f"{prefix}.layer_norm2.bias",
          ("mlp", "fc1", "kernel"): f"{prefix}.mlp.fc1.weight",
          ("mlp", "fc1", "bias"): f"{prefix}.mlp.fc1.bias",
          ("mlp", "fc2", "kernel"): f"{prefix}.mlp.fc2.weight",
          ("mlp", "fc2", "bias"): f"{prefix}.mlp.fc2.bias"}


def _names(arch: ClipArchitecture) -> dict[tuple, str]:
  """lang_image path -> HF name, for every parameter but the fused qkv and the patch stem."""
  names = {("image", "cls_token"): "vision_model.embeddings.class_embedding",
           ("image", "pos_embed"): "vision_model.embeddings.position_embedding.weight",
           ("image", "ln_pre", "scale"): "vision_model.pre_layrnorm.weight",
           ("image", "ln_pre", "bias"): "vision_model.pre_layrnorm.bias",
           ("image", "encoder", "ln_final", "scale"): "vision_model.post_layernorm.weight",
           ("image", "encoder", "ln_final", "bias"): "vision_model.post_layernorm.bias",
           ("image_proj", "kernel"): "visual_projection.weight",
           ("text", "token_embed", "embedding"): "text_model.embeddings.token_embedding.weight",
           ("text", "pos_embed"): "text_model.embeddings.position_embedding.weight",
           ("text", "encoder", "ln_final", "scale"): "text_model.final_layer_norm.weight",
           ("text", "encoder", "ln_final", "bias"): "text_model.final_layer_norm.bias",
           ("text_proj", "kernel"): "text_projection.weight",
           ("logit_scale",): "logit_scale"}
  for tower, hf_tower, depth in (("image", "vision_model", arch.image.depth),
                                 ("text", "text_model", arch.text.depth)):
    for i in range(depth):
      for path, name in _block_names(f"{hf_tower}.encoder.layers.{i}").items():
        names[(tower, "encoder", "blocks", i) + path] = name
  return names


def _is_kernel(path: tuple) -> bool:
  return path[-1] == "kernel"


def _qkv_names(arch: ClipArchitecture):
  for tower, hf_tower, depth in (("image", "vision_model", arch.image.depth),
                                 ("text", "text_model", arch.text.depth)):
    for i in range(depth):
      yield (tower, "encoder", "blocks", i, "attn", "qkv"), \
          f"{hf_tower}.encoder.layers.{i}.self_attn"


def read_params(directory: str, arch: ClipArchitecture | None = None) -> dict[tuple, np.ndarray]:
  """Flat {lang_image path: float32 array} of the towers in a CLIPModel folder."""
  arch = arch or read_architecture(directory)
  tensors = open_files(weight_paths(directory))
  source = f"'{directory}'"
  present = tensors.names()
  used = set(IGNORED)

  def get(name):
    if name not in present:
      raise CheckpointError(f"{source} lacks the tensor '{name}' that a CLIPModel with this "
                            "config.json has.")
    used.add(name)
    return tensors.array(name)

  out = {}
  for path, name in _names(arch).items():
    value = get(name)
    out[path] = linear(value) if _is_kernel(path) else value
  for path, prefix in _qkv_names(arch):
    out[path + ("kernel",)] = np.concatenate(
        [linear(get(f"{prefix}.{p}_proj.weight")) for p in "qkv"], axis=1)
    out[path + ("bias",)] = np.concatenate([get(f"{prefix}.{p}_proj.bias") for p in "qkv"])
  conv = get("vision_model.embeddings.patch_embedding.weight")
  out[("image", "patch_embed", "kernel")] = patch_kernel(conv)
  out[("image", "patch_embed", "bias")] = np.zeros(conv.shape[0], np.float32)
  out[("logit_scale",)] = np.asarray(out[("logit_scale",)], np.float32).reshape(())
  extra = sorted(present - used)
  if extra:
    raise CheckpointError(f"{source} has tensors lang_image's CLIP towers do not model, e.g. "
                          f"{extra[:3]}; only transformers' plain CLIPModel is supported.")
  return out


def hf_config(arch: ClipArchitecture, logit_scale: float, token_ids: dict) -> dict:
  """config.json of a CLIPModel with these towers."""
  if arch.text_pool == "argmax":
    eos = arch.vocab_size - 1
  else:
    eos = arch.eos_id
    if eos == 2:
      raise CheckpointError("end-of-text id 2 cannot be exported: transformers then pools at "
                            "the largest token id instead of the first end-of-text token.")
  act = EXPORT_ACTS[arch.act]
  text = dict(model_type="clip_text_model", vocab_size=arch.vocab_size,
              hidden_size=arch.text.width, intermediate_size=arch.text.mlp_dim,
              num_hidden_layers=arch.text.depth, num_attention_heads=arch.text.heads,
              max_position_embeddings=arch.context_length, hidden_act=act,
              layer_norm_eps=arch.ln_eps, projection_dim=arch.embed_dim,
              eos_token_id=int(eos), bos_token_id=int(token_ids.get("bos", eos)),
              pad_token_id=int(token_ids.get("pad", 0)))
  vision = dict(model_type="clip_vision_model", hidden_size=arch.image.width,
                intermediate_size=arch.image.mlp_dim, num_hidden_layers=arch.image.depth,
                num_attention_heads=arch.image.heads, num_channels=3,
                image_size=arch.image_size, patch_size=arch.image.patch, hidden_act=act,
                layer_norm_eps=arch.ln_eps, projection_dim=arch.embed_dim)
  return dict(model_type="clip", architectures=["CLIPModel"], projection_dim=arch.embed_dim,
              logit_scale_init_value=float(logit_scale), torch_dtype="float32",
              text_config=text, vision_config=vision)


def write(directory: str, arch: ClipArchitecture, params: dict[tuple, np.ndarray], *,
          token_ids: dict | None = None) -> None:
  """Writes config.json, model.safetensors and preprocessor_config.json for transformers.

  `params` is the flat tower tree (architecture.tower_params); `token_ids` may give the
  tokenizer's "bos" and "pad" ids for the config.
  """
  require("safetensors", "writing model.safetensors")
  from safetensors.numpy import save_file
  params = dict(params)
  tensors = {}
  kernel = params.pop(("image", "patch_embed", "kernel"))
  bias = params.pop(("image", "patch_embed", "bias"))
  tensors["vision_model.embeddings.patch_embedding.weight"] = conv_weight(kernel,
                                                                          arch.image.patch)
  pos = params[("image", "pos_embed")].copy()
  pos[1:] += bias  # The patch tokens' share of the patch bias; the class token has none.
  params[("image", "pos_embed")] = pos
  for path, prefix in _qkv_names(arch):
    k, b = params.pop(path + ("kernel",)), params.pop(path + ("bias",))
    for i, p in enumerate("qkv"):
      cols = slice(i * k.shape[0], (i + 1) * k.shape[0])
      tensors[f"{prefix}.{p}_proj.weight"] = linear(k[:, cols])
      tensors[f"{prefix}.{p}_proj.bias"] = np.ascontiguousarray(b[cols])
  names = _names(arch)
  for path, value in params.items():
    if path not in names:
      raise CheckpointError(f"the parameter {'.'.join(map(str, path))} has no place in a "
                            "CLIPModel.")
    tensors[names[path]] = linear(value) if _is_kernel(path) else np.asarray(value)
  tensors = {k: np.array(v, np.float32, order="C") for k, v in tensors.items()}
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  config = hf_config(arch, float(params[("logit_scale",)]), token_ids or {})
  mean, std = IMAGE_NORMS[arch.image_norm]
  preprocessor = dict(image_processor_type="CLIPImageProcessor", do_resize=True,
                      size={"shortest_edge": arch.image_size}, do_center_crop=True,
                      crop_size={"height": arch.image_size, "width": arch.image_size},
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                      image_mean=list(mean), image_std=list(std), resample=3)
  for name, content in (("config.json", config), ("preprocessor_config.json", preprocessor)):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      json.dump(content, f, indent=2)


def read(directory: str) -> tuple[ClipArchitecture, dict[tuple, np.ndarray]]:
  arch = read_architecture(directory)
  return arch, read_params(directory, arch)

