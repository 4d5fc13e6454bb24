"""The fields every lang_image config has, and the arg string they scale by.

Arg string keys (e.g. `configs/clip.py:model=B/16,batch=32768,steps=100000`):
  model  ViT variant and patch, e.g. mu/8 (CPU), Ti/16, S/16, B/16, L/14, So400m/14;
         the text tower takes the same width name.
  batch  global batch size (image-text pairs per step).
  steps  number of optimizer steps.
  res    image resolution (default: 64 for the mu CPU model, 224 otherwise).
  data   the training data: 'scenes' (the default: the generated multi-object benchmark,
         built on first use; the run evaluates on its label sets), 'shapes' (the earlier,
         simpler generated dataset, one or two objects) or a source such as
         wds:/data/{00000..00099}.tar, csv:/data/train.csv (README "Data", docs/data.md).
  seed   seed of parameters, data order and every random choice.
"""

import math

import ml_collections

from lang_image import config as config_lib
from lang_image import objectives as lang_image_objectives

ARG_DEFAULTS = dict(model="mu/8", batch=128, steps=500, res=0, data="scenes", seed=0)
# Datasets that lang_image generates itself, with their own tokenizer, eval set and text length.
EMBEDDED_MAX_LEN = {"shapes": 24, "scenes": 48}

# Joint embedding width per tower size; the CPU model is narrow to stay fast.
EMBED_DIM = {"mu": 128, "Ti": 256, "S": 384, "M": 512, "B": 512, "L": 768, "So400m": 1152,
             "H": 1024, "g": 1024}


def parse(arg):
  return config_lib.parse_arg(arg, **ARG_DEFAULTS)


def with_objectives(arg, objectives) -> ml_collections.ConfigDict:
  """The base config for `arg`, training the given weighted terms (a dict, or a function of
  the parsed args returning one)."""
  args = parse(arg)
  config = base(args)
  terms = objectives(args) if callable(objectives) else objectives
  # Every option is spelled out, so that the config shows it and `--config.objectives.x.y`
  # can override it.
  config.objectives = ml_collections.ConfigDict(
      {name: {"weight": opts["weight"], **lang_image_objectives.option_defaults(name), **opts}
       for name, opts in terms.items()})
  return config


def small_model(args) -> bool:
  return args.model.split("/")[0] in ("mu", "Ti", "S")


def nclip_options(args, weight: float = 1.0, **overrides) -> dict:
  """nCLIP's term: K = 16384 prototypes, or 4096 for small models; the CPU model (`mu`) also
  takes narrower heads (hidden 512, bottleneck 128) so that they do not outweigh its towers."""
  tiny = args.model.split("/")[0] == "mu"
  return {"weight": weight,
          "prototypes": 4096 if small_model(args) else 16384,
          "hidden_dim": 512 if tiny else 2048,
          "bottleneck_dim": 128 if tiny else 256,
          **overrides}


def cliplite_options(args) -> dict:
  """CLIP-Lite's term: critic width 2048, or 512 on the CPU model."""
  tiny = args.model.split("/")[0] == "mu"
  return {"weight": 1.0, "critic_dim": 512 if tiny else 2048}


def base(args) -> ml_collections.ConfigDict:
  """A complete config without objectives; each objective's file adds `objectives`."""
  size = args.model.split("/")[0]
  tiny = size == "mu"
  c = ml_collections.ConfigDict()
  c.seed = args.seed
  c.init = ""  # Released weights to start from: hf:/model/folder or openai:/file.pt (interop).
  c.total_steps = args.steps
  c.batch_size = args.batch

  c.model = ml_collections.ConfigDict(dict(
      image=args.model,
      text=size,
      image_size=args.res or (64 if tiny else 224),
      max_len=EMBEDDED_MAX_LEN.get(args.data, 64),
      embed_dim=EMBED_DIM.get(size, 512),
      image_pool="gap" if tiny else "cls",
      # A conv stem trains the small CPU model much faster; 'patch' is the standard ViT.
      image_stem="conv" if tiny else "patch",
      text_pool="eot",
      # Pixel statistics: 'minus_one_one' maps [0, 255] to [-1, 1]; 'clip' / 'imagenet' are
      # those of imported CLIP towers (set from config.init).
      image_norm="minus_one_one",
      # Compute dtype: 'bfloat16' runs matmuls and the residual stream in bf16 while
      # parameters, optimizer state, norms' statistics and losses stay float32.
      dtype="float32",
      # How the towers' matmuls run (layers.MATMUL_PRECISIONS): 'default' in `dtype`;
      # 'bf16_f32acc' takes bfloat16 inputs and accumulates and returns float32, forward
      # and backward, with everything elementwise in `dtype` (benchmarks/RESULTS.md,
      # "Training step": about 2x the float32 step rate on an AVX512-BF16 CPU).
      matmul_precision="default",
      # Attention kernel: 'xla' (every backend), 'cudnn' (cuDNN flash attention on NVIDIA
      # GPUs, bf16 inputs) or 'auto' (cudnn where it runs, else xla); models/attention_kernels.py.
      attention="xla",
      # Per-block rematerialisation: none | full | dots | dots_no_batch (layers.py).
      remat="none",
      logit_scale_init=math.log(1 / 0.07),
      logit_scale_max=math.log(100.0),
  ))

  embedded = args.data in EMBEDDED_MAX_LEN
  c.data = ml_collections.ConfigDict(dict(
      # 'shapes' or 'scenes' (generated), wds:/path/{00000..00099}.tar, csv:/path.csv,
      # jsonl:/path.jsonl, tfds:name[/config]:split, or a mixture '0.7*wds:...;0.3*csv:...'
      # (README "Data", docs/data.md).
      name=args.data,
      # Preprocessing ops joined by '|' (lang_image/data/ops.py); sizes default to the
      # model's image_size. Empty means the default of the data's kind (config.DEFAULT_PP):
      # 'decode|choose_caption|tokenize' for shapes, and for real images
      # 'decode|random_resized_crop(scale=(0.9, 1.0))|choose_caption|tokenize'.
      pp="",
      # Empty keys mean each source kind's default: wds jpg/png/webp + txt, csv/jsonl
      # filepath + title, tfds image + caption ('json:field' reads a webdataset sidecar).
      image_key="",
      text_key="",
      csv_separator=",",
      # A shard or file that cannot be opened fails the run, or is skipped with a warning.
      skip_bad_shards=False,
      shuffle=True,
      # Empty means $LANG_IMAGE_DATA_DIR or ~/.cache/lang_image (also holds shard indexes
      # and tokenizers trained on first use).
      data_dir="",
      # Where tfds: sources are prepared; empty means tfds' default.
      tfds_data_dir="",
      # Embedded dataset size: 'default' or 'tiny' (for tests).
      variant="default",
      # Fraction of training captions made noisy when read, half replaced by another
      # scene's caption, half with one stated attribute wrong (scenes.noisy_caption); only
      # data that supports it ('scenes') accepts a value above 0.
      caption_noise=0.0,
      # Empty means the tokenizer kept with the data (trained on first use on up to
      # tokenizer_samples captions).
      tokenizer="",
      vocab_size=1000 if embedded else 32000,
      tokenizer_samples=200_000,
      prefetch=4,
      # Reader threads (decoding and preprocessing run in them).
      threads=2 if embedded else 8,
  ))

  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-3 if tiny else 5e-4,
      warmup_steps=max(1, args.steps // 10),
      min_lr_ratio=0.0,
      b1=0.9,
      b2=0.98,
      eps=1e-6,
      weight_decay=0.1 if tiny else 0.2,
      grad_clip=1.0,
  ))

  # Device mesh; -1 means 'all remaining devices'. The batch is split over both axes;
  # parameters and optimizer state are sharded over 'fsdp' (rules in lang_image/parallel.py).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  # 'shard_map': each device computes the loss on its rows against gathered embeddings
  # (B_local x B memory); 'global': XLA partitions the plain global computation (checking).
  c.loss_impl = "shard_map"
  # >1: GradCache accumulation; the towers see batch_size / microbatches pairs at a time
  # while every pair's negatives are still the whole batch.
  c.microbatches = 1

  c.log_every = 50
  # A step with a non-finite loss or gradient norm leaves the state as it was (its update is
  # skipped); this many in a row stop the run with an error (0: never stop).
  c.max_nonfinite_steps = 20
  c.checkpoint_every = 200  # 0: only at the end and on preemption.
  c.keep_checkpoints = 3
  # Every this many steps a cheap evaluation (zero-shot and retrieval on the first
  # eval.periodic_examples test examples) draws accuracy against steps; 0: only at the end.
  c.eval_every = 100 if tiny else 0
  # A finished run (its last checkpoint and evaluation in the workdir) is not evaluated
  # again unless this is True.
  c.force_eval = False
  c.eval = ml_collections.ConfigDict(dict(
      # What the run evaluates on (lang_image/evaluators/choice.py): 'auto' follows the
      # training data (a built-in dataset's own eval split: shapes, or scenes with zero-shot
      # per label set and probes on texture, size and shape; for one's own data only what is
      # named here); 'shapes'; 'scenes'; a prepared tfds set (cifar10, imagenet2012, ...); a labelled
      # folder in CLIP_benchmark's webdataset layout (/data/mnist with classnames.txt and
      # test/*.tar holding cls members) or csv:/jsonl: with a label column and a
      # classnames.txt beside it (zero-shot and retrieval); any other data source
      # (wds:/data/val/{00000..00003}.tar: retrieval); 'none'.
      dataset="auto",
      # Class names (one per line, label order) and zero-shot templates ({c} or {}) of a
      # labelled set; empty: classnames.txt / zeroshot_classification_templates.txt beside it.
      class_names="",
      templates="",
      # The label column of a labelled csv/jsonl eval set; empty: 'label'.
      label_key="",
      # Test examples of the periodic (cheap) evaluation; the final one uses all of them.
      periodic_examples=500,
      source_examples=1000,
      split="test",
      batch_size=256,
      zero_shot=True,
      retrieval=True,
      # Multinomial logistic regression on frozen pooled image features (single-object
      # train images, penalty chosen on the validation split).
      linear_probe=True,
      linear_probe_examples=5000,
      # k-NN on the same frozen features (cosine, votes exp(s / T); Wu et al. 2018).
      knn=True,
      knn_k=20,
      knn_temperature=0.07,
      # The collapse measures of heads with per-example distributions (nCLIP's prototypes):
      # mutual information, entropies and distinct argmax prototypes on every test image
      # and caption (lang_image/evaluators/prototype_usage.py); final evaluation only.
      prototype_usage=True,
      # Retrieval on the embedded data: the stored caption plus generated ones per image.
      captions_per_image=1,
      # PNGs (W/pictures/) and TensorBoard images of the curves and embeddings at the end.
      pictures=True,
  ))
  # Weights & Biases, beside TensorBoard (pip install lang_image[wandb]): the same scalars
  # and images. mode: 'online', 'offline' or '' (wandb's own default / $WANDB_MODE).
  c.wandb = ml_collections.ConfigDict(dict(enabled=False, project="lang_image", entity="",
                                           name="", mode=""))
  c.profile_steps = 0  # >0: capture a profiler trace of this many steps after warm-up.
  return c
