#!/usr/bin/env bash
# Quick start: build, start a hub, join two member clusters, show them.
#
#   ./deploy/quickstart.sh            # emulated members; runs until Ctrl-C, then stops everything
#   ./deploy/quickstart.sh --real     # real Kubernetes members (scripts/real-cluster; needs Go,
#                                     # ~10 min to build the first time)
#   QUICKSTART_DIR=/tmp/qs ./deploy/quickstart.sh
#
# Everything lives in a scratch directory (printed); nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

real=false
case "${1:-}" in
  "") ;;
  --real) real=true ;;
  *) echo "error: unknown argument ${1} (usage: deploy/quickstart.sh [--real])" >&2; exit 2 ;;
esac

dir=${QUICKSTART_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tether-quickstart.XXXXXX")}
mkdir -p "$dir"
bin=$PWD/target/debug
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if $real; then
    for d in "$dir"/*-k8s; do [ -d "$d" ] && ./scripts/real-cluster down --dir "$d"; done
  fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "==> building (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet

port=$(free_port)
metrics=$(free_port)
echo "==> hub: $dir/hub (TLS port 127.0.0.1:$port, metrics 127.0.0.1:$metrics)"
"$bin/tether-hub" init --data-dir "$dir/hub" --advertise "127.0.0.1:$port" >/dev/null
"$bin/tether-hub" serve --data-dir "$dir/hub" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$metrics" >"$dir/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(\"http://127.0.0.1:$metrics/readyz\", timeout=1)" 2>/dev/null && break
  sleep 0.1
done
ctl() { "$bin/tetherctl" --config "$dir/hub/admin.yaml" "$@"; }

join() { # NAME REGION
  local name=$1 region=$2
  if $real; then
    echo "==> starting a real Kubernetes control plane for $name"
    ./scripts/real-cluster up --name "$name" --dir "$dir/$name-k8s" --nodes 2 --owner-pid $$
    ln -sf "$dir/$name-k8s/kubeconfig" "$dir/$name.kubeconfig"
  else
    "$bin/tether-kube-emulator" --name "$name" --nodes 2 --kubeconfig-out "$dir/$name.kubeconfig" \
      >"$dir/$name.emulator.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$dir/$name.kubeconfig" ] && break; sleep 0.1; done
  fi
  local out token pin
  out=$(ctl token create --cluster "$name" --labels "region=$region" -o json)
  token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$out")
  pin=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["caPin"])' <<<"$out")
  echo "==> joining $name (region=$region)"
  # The token goes by environment, not argv (where `ps` would show it).
  TETHER_TOKEN="$token" "$bin/tether-agent" --hub "127.0.0.1:$port" --ca-pin "$pin" \
    --kubeconfig "$dir/$name.kubeconfig" --state-dir "$dir/$name-agent" >"$dir/$name.agent.log" 2>&1 &
  pids+=($!)
}
join edge-1 eu
join edge-2 us

for _ in $(seq 600); do
  [ "$(ctl cluster list | grep -c ' Ready ')" -ge 2 ] && break
  sleep 0.1
done
echo
ctl cluster list
echo
echo "Try:  $bin/tetherctl --config $dir/hub/admin.yaml cluster get edge-1 -o yaml"
echo "      kubectl --kubeconfig $dir/edge-1.kubeconfig get nodes"
if $real; then
  echo "      (kubectl of the same release: $(./scripts/real-cluster bin-dir)/kubectl)"
fi
echo "Logs: $dir/*.log"
if [ -n "${QUICKSTART_EXIT:-}" ]; then
  exit 0
fi
echo "Running; press Ctrl-C to stop everything."
wait
