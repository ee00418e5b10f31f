#!/usr/bin/env bash
# Builds a separate virtual environment with neural-tangents 0.6.5 (JAX), the
# reference that nt_gp's kernels are checked against, and prints its python.
# Usage: tools/reference_env.sh [VENV_DIR]   (default: $HOME/.cache/nt-reference)
# neural-tangents 0.6.5 needs jax/jaxlib 0.4.30 (newer jax dropped jax.core.Jaxpr)
# and tf2jax 0.3.6. It is only ever run as a subprocess: nt_gp never imports jax.
# An existing environment is used only if it has exactly these versions; one
# with other versions is refused (remove it, or name another VENV_DIR).
set -euo pipefail
dir=${1:-${NT_REFERENCE_DIR:-$HOME/.cache/nt-reference}}
want="neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30"
versions() {
  "$1" -c 'import importlib.metadata as m
print(" ".join(f"{p}=={m.version(p)}" for p in ("neural-tangents", "jax", "jaxlib")))' 2>/dev/null
}
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import neural_tangents' 2>/dev/null; then
  have=$(versions "$dir/bin/python" || true)
  if [ "$have" != "$want" ]; then
    echo "tools/reference_env.sh: error: $dir has '$have', not '$want'; remove it (rm -rf $dir) to rebuild it, or pass another VENV_DIR" >&2
    exit 1
  fi
  echo "$dir/bin/python"; exit 0
fi
python3 -m venv "$dir" >&2
"$dir/bin/pip" install -q --upgrade pip >&2
"$dir/bin/pip" install -q neural-tangents==0.6.5 >&2
"$dir/bin/pip" install -q jax==0.4.30 jaxlib==0.4.30 tf2jax==0.3.6 >&2
"$dir/bin/python" -c 'import neural_tangents' >&2
have=$(versions "$dir/bin/python" || true)
if [ "$have" != "$want" ]; then
  echo "tools/reference_env.sh: error: the new environment $dir has '$have', not '$want'" >&2
  exit 1
fi
echo "$dir/bin/python"
