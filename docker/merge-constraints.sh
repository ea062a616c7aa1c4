#!/usr/bin/env bash
# Prints the image's constraints: the shared file with each package named in the GPU file
# replaced by the GPU file's line. Usage: merge-constraints.sh constraints.txt docker/constraints-gpu.txt
set -euo pipefail
shared=$1 gpu=$2
# The package name of a pin line `name==version  # note`, lower-cased with - _ . folded to -.
name() { sed -E 's/[[:space:]]*[=<>!~;[].*//; y/ABCDEFGHIJKLMNOPQRSTUVWXYZ_./abcdefghijklmnopqrstuvwxyz--/'; }
overrides=$(grep -E '^[A-Za-z0-9]' "$gpu" | name)
while IFS= read -r line; do
  if [[ $line =~ ^[A-Za-z0-9] ]] && grep -qxF -- "$(name <<<"$line")" <<<"$overrides"; then
    continue
  fi
  printf '%s\n' "$line"
done <"$shared"
printf '\n# Overrides from %s\n' "$(basename "$gpu")"
grep -E '^[A-Za-z0-9]' "$gpu"
