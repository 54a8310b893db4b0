#!/usr/bin/env bash
# One command that proves the GPU path (issue #14). See docs/gpu.md.
#
#   bash benchmarks/gpu_check.sh                       # make install, then the real run on the GPU (<= 8 min)
#   bash benchmarks/gpu_check.sh --dry-run             # tiny sizes, any machine (CPU: CUDA steps SKIP)
#   PYTHONPATH=src bash benchmarks/gpu_check.sh --python python3 --json gpu_check.json
#                                                      # an existing interpreter (no install, no network)
#
# Every other option goes to benchmarks/gpu_check.py (--out DIR, --steps N, --json PATH, --llm-model DIR,
# --batch, --workers, --world-n, --llm-reports, --only, --budget; --help lists them).
# Exit status: 0 when no step failed, 1 when one did, 2 on bad usage.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=""
args=()

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --python)
            [[ $# -ge 2 ]] || { echo "gpu_check.sh: --python needs an interpreter" >&2; exit 2; }
            python="$2"
            shift 2
            ;;
        --python=*)
            python="${1#--python=}"
            shift
            ;;
        -h | --help)
            usage
            echo
            exec "${python:-python3}" "$repo/benchmarks/gpu_check.py" --help
            ;;
        *)
            args+=("$1")
            shift
            ;;
    esac
done

cd "$repo"
if [[ -z "$python" ]]; then
    make install
    python="$repo/.venv/bin/python"
elif ! command -v "$python" > /dev/null 2>&1; then
    echo "gpu_check.sh: --python $python: not found" >&2
    exit 2
fi
# The package is importable from the source tree whatever the interpreter (no install needed with --python).
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$repo/benchmarks/gpu_check.py" --python "$python" ${args[@]+"${args[@]}"}
