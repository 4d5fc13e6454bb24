#!/usr/bin/env bash
# Submits launch/slurm.sbatch with the job shape given here; --dry-run prints the sbatch
# command and the rendered script instead of submitting.
#
#   launch/slurm.sh [options] -- MAIN_ARGS...
#
# Options:
#   --nodes=N            nodes (default 2)
#   --gpus-per-node=G    GPUs per node = tasks per node (default 8)
#   --cpus-per-task=C    CPU cores per task (default 8)
#   --time=T             time limit, e.g. 24:00:00 (default 24:00:00)
#   --job-name=NAME      job name (default lang_image)
#   --partition=P        partition (default: the cluster's)
#   --account=A          account (default: the cluster's)
#   --dry-run            print the sbatch command and the rendered script; submit nothing
#
# Example:
#   launch/slurm.sh --nodes=4 --partition=gpu -- --config=configs/clip.py:model=B/16,batch=4096 \
#       --workdir=/shared/runs/clip_b16
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$REPO/launch/slurm.sbatch"
NODES=2
GPUS=8
CPUS=8
TIME=24:00:00
JOB_NAME=lang_image
PARTITION=""
ACCOUNT=""
DRY_RUN=0
MAIN_ARGS=()

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

positive() {  # name value
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1=$2 is not a positive whole number; give e.g. $1=2."
}

while (($#)); do
  case "$1" in
    --nodes=*) NODES="${1#*=}" ;;
    --gpus-per-node=*) GPUS="${1#*=}" ;;
    --cpus-per-task=*) CPUS="${1#*=}" ;;
    --time=*) TIME="${1#*=}" ;;
    --job-name=*) JOB_NAME="${1#*=}" ;;
    --partition=*) PARTITION="${1#*=}" ;;
    --account=*) ACCOUNT="${1#*=}" ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) die "unknown argument '$1'; put main.py's arguments after '--' (options are listed by --help)." ;;
  esac
  shift
done

positive --nodes "$NODES"
positive --gpus-per-node "$GPUS"
positive --cpus-per-task "$CPUS"
[[ "$TIME" =~ ^[0-9:-]+$ ]] || die "--time=$TIME is not a SLURM time; give e.g. --time=24:00:00 or --time=2-00:00:00."
[[ "$JOB_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--job-name=$JOB_NAME has characters SLURM may mangle; use letters, digits, '_', '-' and '.'."
((${#MAIN_ARGS[@]})) || die "no arguments for main.py; put them after '--', e.g. launch/slurm.sh --nodes=2 -- --config=configs/clip.py --workdir=/shared/runs/clip."

# The template's #SBATCH values, replaced; partition and account added when given.
render() {
  local extra=""
  [[ -n "$PARTITION" ]] && extra+="#SBATCH --partition=$PARTITION"$'\n'
  [[ -n "$ACCOUNT" ]] && extra+="#SBATCH --account=$ACCOUNT"$'\n'
  awk -v nodes="$NODES" -v gpus="$GPUS" -v cpus="$CPUS" -v time="$TIME" -v name="$JOB_NAME" \
      -v extra="$extra" '
    /^#SBATCH --job-name=/ { print "#SBATCH --job-name=" name; next }
    /^#SBATCH --nodes=/ { print "#SBATCH --nodes=" nodes; next }
    /^#SBATCH --ntasks-per-node=/ { print "#SBATCH --ntasks-per-node=" gpus; next }
    /^#SBATCH --gpus-per-node=/ { print "#SBATCH --gpus-per-node=" gpus; next }
    /^#SBATCH --cpus-per-task=/ { print "#SBATCH --cpus-per-task=" cpus; next }
    /^#SBATCH --time=/ { print "#SBATCH --time=" time; next }
    /^#SBATCH --output=/ { print; printf "%s", extra; next }
    { print }
  ' "$TEMPLATE"
}

# sbatch keeps its own copy of the script, so a temporary file is enough.
submit=(sbatch --export="ALL,LANG_IMAGE_REPO=$REPO")
if ((DRY_RUN)); then
  echo "# $((NODES * GPUS)) processes: $NODES nodes x $GPUS GPUs, one process per GPU"
  echo "$(quote "${submit[@]}") <rendered script> $(quote "${MAIN_ARGS[@]}")"
  echo "# <rendered script>:"
  render
  exit 0
fi
command -v sbatch >/dev/null 2>&1 || die "sbatch is not on PATH; run this on a SLURM login node, or add --dry-run to only print the job."
SCRIPT="$(mktemp "${TMPDIR:-/tmp}/lang_image_slurm.XXXXXX")"
trap 'rm -f "$SCRIPT"' EXIT
render >"$SCRIPT"
"${submit[@]}" "$SCRIPT" "${MAIN_ARGS[@]}"
