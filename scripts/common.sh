# Shared by the course-interface wrappers in scripts/YEAR/: source it, then call `dlcv ...`.
set -euo pipefail
DLCV_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# usage_unless COUNT "ARGS" "$@": exit 2 with a usage line unless exactly COUNT arguments came.
usage_unless() {
  local count="$1" names="$2"
  shift 2
  if [ "$#" -ne "$count" ]; then
    echo "usage: bash $0 $names" >&2
    exit 2
  fi
}

# checkpoint VAR DEFAULT: the checkpoint named by $VAR, else DEFAULT under the repository.
checkpoint() {
  local value="${!1:-}"
  echo "${value:-$DLCV_REPO/$2}"
}

# dlcv ARGS: the repository's environment if it has one ($DLCV_PYTHON overrides), else python3.
dlcv() {
  local python="${DLCV_PYTHON:-}"
  if [ -z "$python" ]; then
    if [ -x "$DLCV_REPO/.venv/bin/python" ]; then python="$DLCV_REPO/.venv/bin/python"; else python=python3; fi
  fi
  "$python" -m dlcv "$@"
}
