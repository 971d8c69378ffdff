#!/usr/bin/env bash
# l2tpd demo: two sites joined by an L2TPv3 pseudowire, one VLAN stretched across them.
#
#   host-a ── vlan1000 ── [brvlan1000 + l2tpvlan1000] site-a ══ UDP 1701 ══ site-b [l2tpvlan1000 + brvlan1000] ── vlan1000 ── host-b
#   198.51.100.1/24        l2tpd, underlay 192.0.2.1           192.0.2.2, l2tpd                                        198.51.100.2/24
#
# Everything lives in network namespaces this script creates and removes (trap EXIT); only
# documentation addresses are used; only the daemons this script starts are stopped.
# Run as root: `npm run demo` (builds first if node_modules/ or dist/ are missing).
# Exit 0 when the hosts ping each other across the pseudowire, non-zero otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[[ $(id -u) -eq 0 ]] || { echo "demo: must run as root (it creates network namespaces)" >&2; exit 1; }
for c in ip ping curl node; do command -v $c >/dev/null || { echo "demo: $c is not installed" >&2; exit 1; }; done

if [[ -t 1 ]]; then B=$'\033[1m'; N=$'\033[0m'; else B=; N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
# Print a command as a walkthrough line, then run it.
run() { printf '%s$ %s\n' "${PROMPT:-}" "$*"; "$@"; }

# ---------------------------------------------------------------- build what is missing
if [[ ! -d node_modules ]]; then step "installing dependencies (npm ci)"; npm ci --no-audit --no-fund; fi
if [[ ! -f native-bindings/build/Release/l2tpd_native.node ]]; then step "building the native addon"; npx node-gyp rebuild --directory native-bindings; fi
if [[ ! -f dist/daemon/main.js || ! -f dist/cli/main.js ]]; then step "building dist/ (npm run build)"; npm run --silent build; fi

# ---------------------------------------------------------------- names and cleanup
ID=$$
SA="l2demo-a-$ID"; SB="l2demo-b-$ID"; HA="l2demo-ha-$ID"; HB="l2demo-hb-$ID"
TMP=$(mktemp -d /tmp/l2tpd-demo.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for ns in "$HA" "$HB" "$SA" "$SB"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
  [[ $rc -eq 0 ]] && echo "demo: cleaned up (namespaces, daemons, $TMP)" || echo "demo: FAILED (exit $rc); cleaned up" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

L2TPD="node $ROOT/dist/daemon/main.js"
l2tpctl() { node "$ROOT/dist/cli/main.js" "$@"; }

# ---------------------------------------------------------------- the two sites
step "two sites in namespaces $SA and $SB, joined by an underlay veth (192.0.2.0/24)"
for ns in "$SA" "$SB" "$HA" "$HB"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add ul0 netns "$SA" type veth peer name ul0 netns "$SB"
ip -n "$SA" addr add 192.0.2.1/24 dev ul0; ip -n "$SA" link set ul0 up
ip -n "$SB" addr add 192.0.2.2/24 dev ul0; ip -n "$SB" link set ul0 up

step "a host behind VLAN 1000 on each site"
echo "(A veth \"vlan1000\" stands in for the VLAN interface eth1.1000, so the demo also runs on kernels"
echo " without 802.1Q. On a real host, 'bridge brvlan1000' would hold eth1.1000, or use 'vlan 1000 dev eth1'.)"
for pair in "$SA:$HA:198.51.100.1" "$SB:$HB:198.51.100.2"; do
  IFS=: read -r site host addr <<<"$pair"
  ip -n "$site" link add brvlan1000 type bridge
  ip -n "$site" link set brvlan1000 up
  ip link add vlan1000 netns "$site" type veth peer name eth0 netns "$host"
  ip -n "$site" link set vlan1000 master brvlan1000 up
  ip -n "$host" addr add "$addr/24" dev eth0
  ip -n "$host" link set eth0 mtu 1400 up
  echo "  $host: eth0 $addr/24 -> $site: vlan1000 in bridge brvlan1000"
done

# ---------------------------------------------------------------- daemons
step "start l2tpd on each site"
for pair in "$SA:a" "$SB:b"; do
  IFS=: read -r site tag <<<"$pair"
  echo "$ ip netns exec $site l2tpd --config $TMP/$tag.json --socket $TMP/$tag.sock --metrics-listen 127.0.0.1:9701 &"
  ip netns exec "$site" $L2TPD --config "$TMP/$tag.json" --socket "$TMP/$tag.sock" \
    --metrics-listen 127.0.0.1:9701 --log-level warn >"$TMP/$tag.log" 2>&1 &
  PIDS+=($!)
done
for tag in a b; do
  for _ in $(seq 150); do
    [[ -S "$TMP/$tag.sock" ]] && l2tpctl --socket "$TMP/$tag.sock" show tunnel >/dev/null 2>&1 && break
    sleep 0.1
  done
  l2tpctl --socket "$TMP/$tag.sock" show tunnel >/dev/null || { echo "l2tpd $tag did not start:"; cat "$TMP/$tag.log"; exit 1; }
done
echo "both daemons ready (pids ${PIDS[*]})"

# ---------------------------------------------------------------- configure with l2tpctl
step "site A: configure with l2tpctl (the same words as ip l2tp)"
export L2TPD_SOCKET="$TMP/a.sock"
run l2tpctl add tunnel tunnel_id 1000 peer_tunnel_id 2000 encap udp local 192.0.2.1 remote 192.0.2.2 udp_sport 1701 udp_dport 1701
run l2tpctl add session name l2tpvlan1000 tunnel_id 1000 session_id 1000 peer_session_id 2000 bridge brvlan1000
step "site B"
export L2TPD_SOCKET="$TMP/b.sock"
run l2tpctl add tunnel tunnel_id 2000 peer_tunnel_id 1000 encap udp local 192.0.2.2 remote 192.0.2.1 udp_sport 1701 udp_dport 1701
run l2tpctl add session name l2tpvlan1000 tunnel_id 2000 session_id 2000 peer_session_id 1000 bridge brvlan1000

# ---------------------------------------------------------------- traffic
step "host A pings host B across the pseudowire"
PROMPT="[$HA] " run ip netns exec "$HA" ping -c 5 -i 0.2 -w 10 198.51.100.2 || { echo "FAIL: no replies across the pseudowire"; exit 1; }
step "host B pings host A"
PROMPT="[$HB] " run ip netns exec "$HB" ping -c 3 -i 0.2 -w 10 198.51.100.1 || { echo "FAIL: no replies across the pseudowire"; exit 1; }

# ---------------------------------------------------------------- what the operator sees
step "site A: sessions with counters"
export L2TPD_SOCKET="$TMP/a.sock"
run l2tpctl show tunnel
run l2tpctl show session -s
step "site A: an excerpt of /metrics (Prometheus)"
echo "$ curl -s http://127.0.0.1:9701/metrics | grep -E '^l2tp_(session_(rx|tx)_(packets|bytes)_total|sessions|tunnels) |^l2tpd_build_info'"
ip netns exec "$SA" curl -s --max-time 5 http://127.0.0.1:9701/metrics \
  | grep -E '^l2tp_(session_(rx|tx)_(packets|bytes)_total\{|sessions |tunnels )|^l2tpd_build_info' || { echo "FAIL: /metrics"; exit 1; }
step "site A: the config file l2tpd keeps (restored on restart)"
cat "$TMP/a.json"

echo
echo "PASS: hosts on VLAN 1000 at both sites reach each other through the L2TPv3 pseudowire"
