#!/usr/bin/env bash
# Fails when a tracked file is over 1 MB: binaries and build outputs are
# never committed (they belong in .gitignore), and a big file slips in
# unnoticed otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
status=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$limit" ]; then
		echo "check-repo: $f is $size bytes, over the 1 MB limit for tracked files: remove it (git rm --cached) and ignore it" >&2
		status=1
	fi
done < <(git ls-files -z)
exit $status
