"""nCLIP: non-contrastive cross-modal prediction over K prototypes, with mean-entropy
maximisation against collapse (Zhou et al., CVPR 2023).

Zero-shot and retrieval use the heads' prototype distributions (nCLIP trains no joint
embedding of its own); see lang_image/objectives/nclip.py.

On the CPU model (mu, batch 128) the heads standardise their hidden layers over the batch
(`head_norm=batch`): without it every variant tried (me_max, centering, sinkhorn; online and
EMA teacher) collapsed within 150 steps to one distribution shared by all samples (mutual
information H(mean p) - mean H(p) = 0), with it 0.36 nats remain. Larger models keep the
paper's head (`head_norm=none`). Why, measured on `data=scenes` (`benchmarks/nclip_ablation.py`;
benchmarks/RESULTS.md, "nCLIP collapse"): with K >> batch a shared near-flat distribution
is the loss's better minimum, and without aligned towers every sample regresses to the
batch's average target. Sinkhorn targets (K = 64) leave that state inside xCLIP, whose CLIP
term aligns the towers (configs/xclip.py uses them on this model), but not here: nCLIP alone
with them predicts the uniform distribution from step 100 on (eps 0.05 and 0.03 measured).

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/nclip.py --workdir=/tmp/nclip

Switches: --config.objectives.nclip.anti_collapse=me_max|centering|sinkhorn,
          --config.objectives.nclip.teacher=online|ema.

At scale:
    python main.py --config=configs/nclip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/nclip_b16
"""

from configs import common


def get_config(arg=None):
  def terms(args):
    tiny = args.model.split("/")[0] == "mu"
    return {"nclip": common.nclip_options(args, head_norm="batch" if tiny else "none")}
  return common.with_objectives(arg, terms)
