#!/usr/bin/env bash
# Gather a job array's results: merge the task files RUN_DIR/<task>.jsonl into
# RUN_DIR.jsonl and compare the devices in it.
#
#   scripts/slurm/collect.sh /shared/joulebench/h100-survey [compare flags…]
#
# The per-GPU files (<task>.devK.jsonl) are already inside their task's file and are
# left out. Tasks that did not finish can be resubmitted (--resume) and collected again.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
dir=${1%/}
shift
bin=${JOULEBENCH:-joulebench}
[ -d "$dir" ] || { echo "collect: $dir is not a directory" >&2; exit 2; }

mapfile -t tasks < <(find "$dir" -maxdepth 1 -name '*.jsonl' ! -name '*.dev*.jsonl' | sort -V)
[ "${#tasks[@]}" -gt 0 ] || { echo "collect: no task files (<task>.jsonl) in $dir" >&2; exit 1; }
for t in "${tasks[@]}"; do
  echo "collect: $(basename "$t"): $(grep -c . "$t" || true) records" >&2
done
merged="$dir.jsonl"
# the merged file is derived from the task files: rebuilt every time
"$bin" merge "${tasks[@]}" --out "$merged" --force >&2
"$bin" compare "$merged" "$@"
