#!/usr/bin/env bash
# The docs_getting_started test: runs the shell blocks of
# docs/getting-started.md marked "<!-- run by the docs_getting_started test -->",
# word for word, in a scratch directory whose build/ is this build tree, and
# checks that every host they start is stopped by them.
#   run_getting_started.sh DOC BUILD_DIR
set -euo pipefail
doc=$1
build=$2
work=$(mktemp -d)
cleanup() {
  # A step that failed may leave a host behind: whatever runs in $work.
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$work" ] && kill "${proc#/proc/}" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
ln -s "$build" "$work/build"

awk '/<!-- run by the docs_getting_started test -->/ { take = 1; next }
     take && /^```sh$/ { inside = 1; next }
     inside && /^```$/ { inside = 0; take = 0; next }
     inside { print }' "$doc" >"$work/steps.sh"
blocks=$(grep -c 'run by the docs_getting_started test' "$doc")
[ "$blocks" -ge 2 ] || { echo "docs_getting_started: found $blocks marked blocks in $doc"; exit 1; }
echo "docs_getting_started: running $blocks blocks of $doc:"
cat "$work/steps.sh"

(cd "$work" && bash -e steps.sh)

# Nothing the steps started is left listening.
for port in 65432 65433; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "docs_getting_started: a host is still listening on 127.0.0.1:$port"
    exit 1
  fi
done
echo "docs_getting_started: ok"
