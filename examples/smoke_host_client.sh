#!/bin/sh
# minimal_host and sync_client against each other on a free loopback port.
#   smoke_host_client.sh DIR-OF-THE-EXAMPLES
set -eu
bin=$1
out=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
timeout 20 "$bin/minimal_host" 0 --once >"$out" &
pid=$!
i=0
until grep -q '^listening on ' "$out"; do
  i=$((i + 1))
  [ "$i" -lt 200 ] || { echo "minimal_host did not start"; exit 1; }
  sleep 0.05
done
address=$(sed -n 's/^listening on //p' "$out")
answer=$(timeout 20 "$bin/sync_client" "$address" echo '{"hello": "comet"}')
[ "$answer" = '{"hello": "comet"}' ] || { echo "unexpected answer: $answer"; exit 1; }
wait "$pid"  # --once: the host ends by itself after answering
echo "ok: $address answered $answer"
