#!/bin/sh
# Runs a program and passes only when it exits 0 and every pattern (an
# extended regular expression) matches a line of its output; ctest's
# PASS_REGULAR_EXPRESSION alone would ignore the exit status.
#   expect_output.sh -e REGEX [-e REGEX ...] -- PROGRAM [ARGS...]
set -u
patterns=$(mktemp)
trap 'rm -f "$patterns"' EXIT
while [ "$1" = "-e" ]; do
  printf '%s\n' "$2" >>"$patterns"
  shift 2
done
[ "$1" = "--" ] && shift
out=$("$@" 2>&1)
status=$?
printf '%s\n' "$out"
if [ "$status" -ne 0 ]; then
  echo "expect_output: $1 exited $status" >&2
  exit 1
fi
while IFS= read -r pattern; do
  if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
    echo "expect_output: no line of $1's output matches: $pattern" >&2
    exit 1
  fi
done <"$patterns"
