#!/usr/bin/env bash
# Trains on a Cloud TPU VM pod slice: every worker runs main.py, and lang_image.distributed
# joins them into one job (jax reads the worker list from the TPU metadata server).
#
#   launch/tpu_pod.sh [options] create|copy|run|delete|all [-- MAIN_ARGS...]
#
#   create   gcloud compute tpus tpu-vm create (accelerator type, software version, zone)
#   copy     pack this working tree, scp it to every worker, unpack, pip install -e . + jax[tpu]
#   run      ssh to every worker at once and run `python3 main.py MAIN_ARGS`
#   delete   delete the TPU VM
#   all      create, copy, run, then delete (also when run fails; --keep skips the delete)
#
# Options (each also read from the environment variable in brackets):
#   --name=NAME        TPU VM name            [LANG_IMAGE_TPU_NAME, default lang-image-$USER]
#   --zone=ZONE        zone                   [LANG_IMAGE_TPU_ZONE, default us-central2-b]
#   --type=TYPE        accelerator type       [LANG_IMAGE_TPU_TYPE, default v4-32]
#   --version=VERSION  TPU software version   [LANG_IMAGE_TPU_VERSION, default tpu-ubuntu2204-base]
#   --project=PROJECT  GCP project            [LANG_IMAGE_TPU_PROJECT, default gcloud's own]
#   --spot             create a Spot TPU VM   [LANG_IMAGE_TPU_SPOT=1]
#   --dir=DIR          repo dir on workers    [LANG_IMAGE_TPU_DIR, default lang_image, under ~]
#   --jax-tpu=SPEC     TPU jax to install     [LANG_IMAGE_TPU_JAX, default jax[tpu]==0.10.2]
#   --keep             with `all`: keep the TPU VM after the run
#   --dry-run          print every command instead of running it
#
# MAIN_ARGS need a --workdir that every worker sees at the same path (see launch/README.md).
# Example:
#   launch/tpu_pod.sh --type=v4-32 all -- --config=configs/clip.py:model=B/16,batch=4096 \
#       --workdir=/mnt/shared/clip_b16
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${LANG_IMAGE_TPU_NAME:-lang-image-${USER:-user}}"
ZONE="${LANG_IMAGE_TPU_ZONE:-us-central2-b}"
TYPE="${LANG_IMAGE_TPU_TYPE:-v4-32}"
VERSION="${LANG_IMAGE_TPU_VERSION:-tpu-ubuntu2204-base}"
PROJECT="${LANG_IMAGE_TPU_PROJECT:-}"
SPOT="${LANG_IMAGE_TPU_SPOT:-0}"
REMOTE_DIR="${LANG_IMAGE_TPU_DIR:-lang_image}"
JAX_TPU="${LANG_IMAGE_TPU_JAX:-jax[tpu]==0.10.2}"
KEEP=0
DRY_RUN=0
ACTION=""
MAIN_ARGS=()

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Runs one command, or prints it with --dry-run.
do_cmd() {
  if ((DRY_RUN)); then
    quote "$@"
  else
    "$@"
  fi
}

while (($#)); do
  case "$1" in
    --name=*) NAME="${1#*=}" ;;
    --zone=*) ZONE="${1#*=}" ;;
    --type=*) TYPE="${1#*=}" ;;
    --version=*) VERSION="${1#*=}" ;;
    --project=*) PROJECT="${1#*=}" ;;
    --dir=*) REMOTE_DIR="${1#*=}" ;;
    --jax-tpu=*) JAX_TPU="${1#*=}" ;;
    --spot) SPOT=1 ;;
    --keep) KEEP=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    create|copy|run|delete|all)
      [[ -z "$ACTION" ]] || die "two subcommands given ('$ACTION' and '$1'); give one of create, copy, run, delete, all."
      ACTION="$1" ;;
    *) die "unknown argument '$1'; the subcommands are create, copy, run, delete, all and the options are listed by --help." ;;
  esac
  shift
done

[[ -n "$ACTION" ]] || die "no subcommand; give one of create, copy, run, delete, all (e.g. launch/tpu_pod.sh --dry-run all -- --config=configs/clip.py --workdir=/mnt/shared/run)."
[[ "$NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "TPU name '$NAME' is not valid; use lowercase letters, digits and hyphens, starting with a letter (--name or LANG_IMAGE_TPU_NAME)."
[[ -n "$ZONE" && -n "$TYPE" && -n "$VERSION" ]] || die "zone, accelerator type and version must not be empty; set --zone, --type and --version."
[[ "$REMOTE_DIR" =~ ^[A-Za-z0-9_./-]+$ && "$REMOTE_DIR" != "/" ]] || die "--dir '$REMOTE_DIR' is not a plain directory name; use letters, digits, '_', '-', '.' and '/'."
if [[ "$ACTION" == run || "$ACTION" == all ]] && ((${#MAIN_ARGS[@]} == 0)); then
  die "'$ACTION' needs main.py's arguments after '--', e.g. launch/tpu_pod.sh $ACTION -- --config=configs/clip.py --workdir=/mnt/shared/run."
fi
if ((!DRY_RUN)) && ! command -v gcloud >/dev/null 2>&1; then
  die "gcloud is not on PATH; install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install) or add --dry-run to only print the commands."
fi

COMMON=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && COMMON+=(--project="$PROJECT")
TARBALL="${TMPDIR:-/tmp}/lang_image_${NAME}.tar.gz"

create() {
  local extra=()
  ((SPOT)) && extra+=(--spot)
  do_cmd gcloud compute tpus tpu-vm create "$NAME" "${COMMON[@]}" \
    --accelerator-type="$TYPE" --version="$VERSION" "${extra[@]}"
}

copy() {
  do_cmd tar -czf "$TARBALL" -C "$REPO" --exclude=.git --exclude=__pycache__ \
    --exclude='*.egg-info' --exclude=.pytest_cache .
  do_cmd gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:lang_image.tar.gz" \
    "${COMMON[@]}" --worker=all
  local install
  install="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf lang_image.tar.gz -C $REMOTE_DIR"
  install+=" && cd $REMOTE_DIR && python3 -m pip install -q -e . $(quote "$JAX_TPU")"
  do_cmd gcloud compute tpus tpu-vm ssh "$NAME" "${COMMON[@]}" --worker=all --command="$install"
  ((DRY_RUN)) || rm -f "$TARBALL"
}

run() {
  do_cmd gcloud compute tpus tpu-vm ssh "$NAME" "${COMMON[@]}" --worker=all \
    --command="cd $REMOTE_DIR && python3 main.py $(quote "${MAIN_ARGS[@]}")"
}

delete() {
  do_cmd gcloud compute tpus tpu-vm delete "$NAME" "${COMMON[@]}" --quiet
}

case "$ACTION" in
  create) create ;;
  copy) copy ;;
  run) run ;;
  delete) delete ;;
  all)
    create
    if ((KEEP)); then
      echo "launch/tpu_pod.sh: keeping TPU VM '$NAME'; delete it with: launch/tpu_pod.sh --name=$NAME --zone=$ZONE delete" >&2
    else
      # The slice is deleted however the rest ends: success, failure or Ctrl-C.
      trap delete EXIT
      trap 'exit 130' INT
      trap 'exit 143' TERM
    fi
    copy
    run
    ;;
esac
