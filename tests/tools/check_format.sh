#!/usr/bin/env bash
# Fails when a C++ file of the tree is not as clang-format-14 (.clang-format) would write it, and
# names the files. Fix with: scripts/format
set -euo pipefail
root=${1:-.}
cd "$root"
command -v clang-format-14 >/dev/null || { echo "clang-format-14 not installed (scripts/setup)"; exit 1; }
bad=0
while IFS= read -r f; do
  if ! clang-format-14 --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done < <(find core qom bus net hw apps examples tests bench -name '*.cc' -o -name '*.h' | sort)
echo "$bad file(s) not formatted"
[[ $bad -eq 0 ]]
