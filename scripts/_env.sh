# Shared by scripts/demo and scripts/test: find Python 3.12+ and build the project's venv.
# Sourced, not run.

find_python() {
  local candidates=()
  [ -n "${THOTH_PYTHON:-}" ] && candidates+=("$THOTH_PYTHON")
  candidates+=(python3.12 python3.13 python3.14)
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    for v in "$root"/versions/3.1[2-9]*/bin/python3; do [ -x "$v" ] && candidates+=("$v"); done
  fi
  for v in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/bin/python3.1[2-9] /usr/local/bin/python3.1[2-9] python3; do
    candidates+=("$v")
  done
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  echo "error: Thoth needs Python 3.12 or newer; none found (set THOTH_PYTHON=/path/to/python3.12)" >&2
  return 1
}

# ensure_venv DIR EXTRAS: create DIR with Python 3.12+ and install the project with EXTRAS into it.
ensure_venv() {
  local dir=$1 extras=$2 py
  if [ ! -x "$dir/bin/python" ]; then
    py=$(find_python)
    echo "==> creating $dir with $py"
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip 2> >(grep -v "^WARNING: Location 'file:" >&2)
  fi
  echo "==> installing thoth-governance$extras into $dir"
  # This machine's pip config names a local mirror folder that may be absent: hide that noise.
  "$dir/bin/python" -m pip install -q -e ".$extras" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
