#!/usr/bin/env bash
# Builds a virtual environment with nt_gp and only its requirements (what
# `pip install nt_gp` gives: no extras such as scikit-learn or matplotlib,
# which Keras 3 imports with TensorFlow whenever they are installed), and
# prints its python. benchmarks/compare.py runs nt_gp there, as it runs
# neural-tangents in the environment of tools/reference_env.sh.
# Usage: tools/lean_env.sh [VENV_DIR]   (default: $HOME/.cache/nt_gp-lean)
# nt_gp is installed in editable mode from this checkout: the environment
# runs the checkout's code, and an existing one is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${NT_GP_LEAN_DIR:-$HOME/.cache/nt_gp-lean}}
if [ ! -x "$dir/bin/python" ]; then
  python3 -m venv "$dir" >&2
fi
"$dir/bin/pip" install -q -e "$root" >&2
if "$dir/bin/python" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) for m in ("sklearn", "matplotlib")))'; then
  echo "$dir/bin/python"
else
  echo "tools/lean_env.sh: error: $dir has scikit-learn or matplotlib installed; remove it (rm -rf $dir) to rebuild it, or pass another VENV_DIR" >&2
  exit 1
fi
