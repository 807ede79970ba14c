# Shared by the course-interface wrappers in scripts/YEAR/ (the folder `dlcv handin` writes runs
# without dlcv: docs/hw1.md): source it, then call `dlcv ...`.
set -euo pipefail
DLCV_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DLCV_REPO="$(cd "$DLCV_HERE/.." && pwd)"

# usage_unless COUNT "ARGS" "$@": exit 2 with a usage line unless exactly COUNT arguments came.
usage_unless() {
  local count="$1" names="$2"
  shift 2
  if [ "$#" -ne "$count" ]; then
    echo "usage: bash $0 $names" >&2
    exit 2
  fi
}

# checkpoint VAR NAME CANDIDATE...: the checkpoint named by $VAR; else checkpoints/NAME.ckpt beside this file; else the first CANDIDATE under the repository that exists (else the first CANDIDATE).
checkpoint() {
  local var="$1" name="$2" candidate
  shift 2
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if [ -f "$DLCV_HERE/checkpoints/$name.ckpt" ]; then echo "$DLCV_HERE/checkpoints/$name.ckpt"; return; fi
  for candidate in "$@"; do
    if [ -f "$DLCV_REPO/$candidate" ]; then echo "$DLCV_REPO/$candidate"; return; fi
  done
  echo "$DLCV_REPO/$1"
}

# dlcv ARGS: $DLCV_PYTHON -m dlcv when set; else the repository's environment; else the dlcv on the PATH;
# else python3 -m dlcv.
dlcv() {
  local python="${DLCV_PYTHON:-}"
  if [ -z "$python" ] && [ -x "$DLCV_REPO/.venv/bin/python" ]; then python="$DLCV_REPO/.venv/bin/python"; fi
  if [ -z "$python" ] && command -v dlcv >/dev/null; then command dlcv "$@"; return; fi
  "${python:-python3}" -m dlcv "$@"
}
