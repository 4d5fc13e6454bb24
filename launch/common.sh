# Helpers the launch scripts share; sourced, not run. `usage` prints the calling script's
# header comment (its lines 2 up to `set -euo`).

die() {
  echo "error: $*" >&2
  exit 2
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# Shell-quotes each argument only where needed, so printed commands stay readable.
quote() {
  local arg out=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}
