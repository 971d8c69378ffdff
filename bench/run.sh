#!/usr/bin/env bash
# l2tpd benchmark (`npm run bench`; not part of `npm test`). Needs root, gcc, qemu-system-x86_64,
# iperf3, taskset and a built l2tpd (`npm run build`). See bench/README.md.
#
#   BENCH_QUICK=1   1 run x 2 s per point instead of 3 runs x 3 s
#   BENCH_RUNS=N BENCH_SECS=S BENCH_WARM=S   override runs, window and warm-up
#   BENCH_DUTS="cfwd qemu l2tpd-plain l2tpd" forwarders to measure (default: all four; l2tpd-plain is
#                                            l2tpd --offload off, to show what tap offload changes)
#   BENCH_SIZES="64 1400"                    frame sizes (bytes, Ethernet without FCS)
#   BENCH_E2E=0                              skip the iperf3 end-to-end pairs
#   BENCH_HALF=0                             skip the one-direction pps points
#   BENCH_SOAK=S                             l2tpd GC soak: one S-second window per direction at 64 B
#                                            after its regular points (default 10; 0 skips it)
#   BENCH_KEEP=DIR                           copy the run's logs and raw data to DIR before cleanup
#   BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR"   extra node flags for l2tpd (profiling)
#
# Everything it creates (namespaces, processes, temp dir) carries this run's tag and is removed
# on exit; it signals only PIDs it started; every wait loop is bounded by time.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then RUNS=${BENCH_RUNS:-1}; SECS=${BENCH_SECS:-2}; MODE=quick
else RUNS=${BENCH_RUNS:-3}; SECS=${BENCH_SECS:-3}; MODE=full; fi
WARM=${BENCH_WARM:-1}
DUTS=${BENCH_DUTS:-"cfwd qemu l2tpd-plain l2tpd"}
SIZES=${BENCH_SIZES:-"64 1400"}
E2E=${BENCH_E2E:-1}
HALF=${BENCH_HALF:-1}
SOAK=${BENCH_SOAK:-10}
HZ=$(getconf CLK_TCK)

die() { echo "bench: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for c in gcc ip taskset qemu-system-x86_64 iperf3 node; do command -v "$c" >/dev/null || die "missing $c"; done
[[ -f "$ROOT/dist/daemon/main.js" && -f "$ROOT/dist/cli/main.js" ]] || die "build l2tpd first: npm run build"
(( $(nproc) >= 2 )) || die "needs 2 CPUs (forwarder on CPU0, generator/sink on CPU1)"

TAG="lb$(( $$ % 100000 ))"
TMP="$(mktemp -d "/tmp/l2tpd-bench-$TAG.XXXXXX")"
NSS=()
PIDS=()
RAW="$TMP/raw.jsonl"
: >"$RAW"

cleanup() {
  set +e
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 30); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for n in "${NSS[@]}"; do
    # Anything still inside our own namespaces was started by this script.
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  [[ -n ${BENCH_KEEP:-} ]] && mkdir -p "$BENCH_KEEP" && cp -r "$TMP"/. "$BENCH_KEEP"/
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench $(date +%T)] $*" >&2; }
ns_add() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; }
ns_del() { local n=$1 p; for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del "$n" 2>/dev/null || true; local k; for k in "${!NSS[@]}"; do [[ ${NSS[$k]} == "$n" ]] && unset 'NSS[k]'; done; return 0; }
veth() { # veth NS_A IF_A NS_B IF_B [MTU]
  ip link add "$2" netns "$1" mtu "${5:-1500}" type veth peer name "$4" netns "$3" mtu "${5:-1500}"
  ip -n "$1" link set "$2" up; ip -n "$3" link set "$4" up; }
counter() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }
udp_rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ {n++; if (n == 1) for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; if (n == 2) print $c}' /proc/net/snmp; }
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
preempted() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^nonvoluntary_ctxt_switches/ {n += $2} END {print n + 0}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_for() { # wait_for SECONDS CMD...: poll CMD every 0.1 s, bounded
  local end=$(( $(date +%s%N) + ${1} * 1000000000 )); shift
  while (( $(date +%s%N) < end )); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
stop_pid() { # TERM, bounded wait, KILL
  local p=$1; kill -TERM "$p" 2>/dev/null || return 0
  wait_for 5 bash -c "! kill -0 $p" || kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local k; for k in "${!PIDS[@]}"; do [[ ${PIDS[$k]} == "$p" ]] && unset 'PIDS[k]'; done; return 0; }
spawn() { "$@" & PIDS+=("$!"); LASTPID=$!; }

log "mode=$MODE runs=$RUNS window=${SECS}s warm-up=${WARM}s duts=[$DUTS] sizes=[$SIZES] tag=$TAG"
gcc -O2 -Wall -o "$TMP/cfwd" "$HERE/cfwd.c"
gcc -O2 -Wall -o "$TMP/gen" "$HERE/gen.c"
GEN="$TMP/gen"

# ------------------------------------------------------------------ forwarders under test
# start_dut KIND NS TAP CPU LOCAL REMOTE BRIDGE: starts the forwarder in NS pinned to CPU, its tap
# enslaved to BRIDGE and up; sets DUTPID. Session 1 <-> 1, UDP port 1701 on both sides.
L2TPD_N=0
declare -A L2TPD_DIR_OF=()
start_dut() {
  local kind=$1 ns=$2 tap=$3 cpu=$4 local=$5 remote=$6 br=$7
  case $kind in
    cfwd)
      spawn ip netns exec "$ns" taskset -c "$cpu" "$TMP/cfwd" "$tap" "$local" 1701 "$remote" 1701 1 1 >"$TMP/cfwd-$ns.log" 2>&1 ;;
    qemu)
      spawn ip netns exec "$ns" taskset -c "$cpu" qemu-system-x86_64 -machine none -nodefaults -display none \
        -netdev "tap,id=t0,ifname=$tap,script=no,downscript=no" \
        -netdev "l2tpv3,id=l0,src=$local,dst=$remote,udp=on,srcport=1701,dstport=1701,txsession=1,rxsession=1,counter=on" \
        -netdev hubport,id=h0,hubid=0,netdev=t0 -netdev hubport,id=h1,hubid=0,netdev=l0 >"$TMP/qemu-$ns.log" 2>&1 ;;
    l2tpd|l2tpd-plain)
      local offload=on; [[ $kind == l2tpd-plain ]] && offload=off
      L2TPD_N=$((L2TPD_N + 1))
      local d="$TMP/l2tpd-$L2TPD_N"; mkdir -p "$d"; : >"$d/gc.trigger"; : >"$d/gc.jsonl"
      L2TPD_DIR=$d
      L2TPD_DIR_OF[$ns]=$d
      spawn env NODE_OPTIONS="--require $HERE/gcprobe.cjs" BENCH_GC_TRIGGER="$d/gc.trigger" BENCH_GC_OUT="$d/gc.jsonl" \
        ip netns exec "$ns" taskset -c "$cpu" node --trace-gc ${BENCH_NODE_FLAGS:-} "$ROOT/dist/daemon/main.js" --config "$d/l2tpd.json" \
        --socket "$d/l2tpd.sock" --metrics-listen off --log-level warn --offload "$offload" >"$d/out.log" 2>&1
      local cli=(node "$ROOT/dist/cli/main.js" --socket "$d/l2tpd.sock")
      wait_for 20 "${cli[@]}" show tunnel || { cat "$d/out.log" >&2; die "l2tpd did not start"; }
      "${cli[@]}" add tunnel tunnel_id 1 peer_tunnel_id 1 encap udp local "$local" remote "$remote" udp_sport 1701 udp_dport 1701 >/dev/null
      "${cli[@]}" add session name "$tap" tunnel_id 1 session_id 1 peer_session_id 1 bridge "$br" >/dev/null ;;
    *) die "unknown forwarder $kind" ;;
  esac
  DUTPID=$LASTPID
  # `ip netns exec`, `env` and taskset exec in place, so $! is the forwarder itself.
  wait_for 15 ip -n "$ns" link show "$tap" || die "$kind: tap $tap did not appear ($(cat "$TMP"/*"$ns"*.log 2>/dev/null))"
  [[ $kind == l2tpd* ]] || ip -n "$ns" link set "$tap" master "$br" up
  wait_for 5 bash -c "ip -n $ns link show $tap | grep -q 'master $br'" || die "$kind: $tap not in $br"
}

stop_dut() { # stop_dut KIND NS PID: l2tpd keeps its taps on SIGTERM (by design), so delete session and tunnel first
  if [[ $1 == l2tpd* ]]; then
    local cli=(timeout 20 node "$ROOT/dist/cli/main.js" --socket "${L2TPD_DIR_OF[$2]}/l2tpd.sock")
    "${cli[@]}" del session tunnel_id 1 session_id 1 >/dev/null 2>&1 || true
    "${cli[@]}" del tunnel tunnel_id 1 >/dev/null 2>&1 || true
  fi
  stop_pid "$3"
}

gc_snapshot() { # gc_snapshot DIR -> prints the JSON line the worker wrote (or {})
  local d=$1 before; before=$(wc -l <"$d/gc.jsonl")
  echo x >>"$d/gc.trigger"
  wait_for 3 bash -c "(( \$(wc -l <'$d/gc.jsonl') > $before ))" || { echo '{}'; return; }
  tail -n 1 "$d/gc.jsonl"
}
tracegc_lines() { grep -cE 'ms: (Scavenge|Mark-Compact|Mark-sweep|Minor)' "$1/out.log" || true; }
# GCs forced by allocation (young generation full): the sign of per-packet garbage. V8's memory
# reducer ("Mark-Compact (reduce)", a few seconds after start-up) shrinks the heap and is not.
tracegc_alloc() { grep -E 'ms: (Scavenge|Mark-Compact|Mark-sweep|Minor)' "$1/out.log" | grep -c 'allocation failure' || true; }

# ------------------------------------------------------------------ half tunnel: one direction
# G (generator/ethernet side) --veth g0|vg--> D: br0(vg, tap) + DUT, ul0 192.0.2.1 --veth--> S ul0 192.0.2.2
NS_G="${TAG}g"; NS_D="${TAG}d"; NS_S="${TAG}s"

measure() { # measure DUT DIR SIZE RUN [KIND WINDOW]: KIND pps (default) or soak
  local dut=$1 dir=$2 size=$3 run=$4 kind=${5:-pps} SECS=${6:-$SECS}
  local total=$((WARM + SECS + 1)) gpid spid c0 c1 t0 t1 r0 r1 g0='{}' g1='{}' tg0=0 tg1=0 ta0=0 ta1=0
  if [[ $dir == encap ]]; then
    spawn ip netns exec "$NS_S" taskset -c 1 "$GEN" sink 192.0.2.2 1701 1 $((total + 2)) >"$TMP/sink.out"; spid=$LASTPID
    sleep 0.2
    spawn ip netns exec "$NS_G" taskset -c 1 "$GEN" eth g0 "$size" "$total" >"$TMP/gen.out"; gpid=$LASTPID
    cnt=(counter "$NS_S" ul0 rx_packets)
    drops=(counter "$NS_D" tb0 tx_dropped)   # frames the bridge offered the tap while its queue was full
  else
    spid=
    spawn ip netns exec "$NS_S" taskset -c 1 "$GEN" l2tp 192.0.2.2 1701 192.0.2.1 1701 1 "$size" "$total" >"$TMP/gen.out"; gpid=$LASTPID
    cnt=(counter "$NS_G" g0 rx_packets)
    drops=(udp_rcvbuf_errors "$NS_D")        # datagrams dropped on the forwarder's full socket buffer
  fi
  sleep "$WARM"
  if [[ $dut == l2tpd* ]]; then g0=$(gc_snapshot "$L2TPD_DIR"); tg0=$(tracegc_lines "$L2TPD_DIR"); ta0=$(tracegc_alloc "$L2TPD_DIR"); fi
  local d0 d1; d0=$("${drops[@]}")
  local p0 p1; p0=$(preempted "$DUTPID")
  c0=$("${cnt[@]}"); t0=$(cputicks "$DUTPID"); r0=$(rss_kb "$DUTPID"); local s0; s0=$(date +%s%N)
  sleep "$SECS"
  c1=$("${cnt[@]}"); t1=$(cputicks "$DUTPID"); r1=$(rss_kb "$DUTPID"); local s1; s1=$(date +%s%N)
  d1=$("${drops[@]}"); p1=$(preempted "$DUTPID")
  if [[ $dut == l2tpd* ]]; then g1=$(gc_snapshot "$L2TPD_DIR"); tg1=$(tracegc_lines "$L2TPD_DIR"); ta1=$(tracegc_alloc "$L2TPD_DIR"); fi
  wait_for $((total + 5)) bash -c "! kill -0 $gpid" || true
  stop_pid "$gpid"; [[ -n $spid ]] && stop_pid "$spid"
  local sink='{}'
  [[ -n $spid ]] && sink=$(sed -n 's/^valid=\([0-9]*\) invalid=\([0-9]*\)$/{"valid":\1,"invalid":\2}/p' "$TMP/sink.out")
  [[ -n $sink ]] || sink='{}'
  local offered; offered=$(sed -n 's/.*pps=\([0-9]*\).*/\1/p' "$TMP/gen.out")
  echo "{\"kind\":\"$kind\",\"dut\":\"$dut\",\"dir\":\"$dir\",\"size\":$size,\"run\":$run,\"packets\":$((c1 - c0)),\"ns\":$((s1 - s0)),\"ticks\":$((t1 - t0)),\"hz\":$HZ,\"offered_pps\":${offered:-0},\"input_drops\":$((d1 - d0)),\"preemptions\":$((p1 - p0)),\"rss_kb\":[$r0,$r1],\"sink\":$sink,\"gc\":[$g0,$g1],\"trace_gc_lines\":$((tg1 - tg0)),\"trace_gc_alloc\":$((ta1 - ta0))}" >>"$RAW"
  log "$dut $dir ${size}B $kind $run: $(( (c1 - c0) * 1000000000 / (s1 - s0) )) pps (offered ${offered:-?}), cpu ticks $((t1 - t0))"
}

half_tunnel() {
  ns_add "$NS_G"; ns_add "$NS_D"; ns_add "$NS_S"
  veth "$NS_G" g0 "$NS_D" vg
  veth "$NS_D" ul0 "$NS_S" ul0
  ip -n "$NS_D" addr add 192.0.2.1/24 dev ul0; ip -n "$NS_S" addr add 192.0.2.2/24 dev ul0
  ip -n "$NS_D" link add br0 type bridge; ip -n "$NS_D" link set br0 up
  ip -n "$NS_D" link set vg master br0
  local dut dir size run
  for dut in $DUTS; do
    start_dut "$dut" "$NS_D" tb0 0 192.0.2.1 192.0.2.2 br0
    for dir in encap decap; do for size in $SIZES; do for run in $(seq 1 "$RUNS"); do
      measure "$dut" "$dir" "$size" "$run"
    done; done; done
    if [[ $dut == l2tpd ]] && (( SOAK > 0 )); then
      for dir in decap encap; do measure "$dut" "$dir" 64 1 soak "$SOAK"; done
    fi
    stop_dut "$dut" "$NS_D" "$DUTPID"
    wait_for 10 bash -c "! ip -n $NS_D link show tb0" || die "tap of $dut was not removed"
  done
  ns_del "$NS_G"; ns_del "$NS_D"; ns_del "$NS_S"
}

# ------------------------------------------------------------------ end to end: iperf3 TCP
# hA 203.0.113.1 -- A: brA + forwarder (CPU0), ul0 192.0.2.1 == 192.0.2.2 ul0, B: brB + forwarder (CPU1) -- hB 203.0.113.2
end_to_end() {
  local A="${TAG}a" B="${TAG}b" HA="${TAG}ha" HB="${TAG}hb" pair run pa pb
  ns_add "$A"; ns_add "$B"; ns_add "$HA"; ns_add "$HB"
  veth "$A" ul0 "$B" ul0
  ip -n "$A" addr add 192.0.2.1/24 dev ul0; ip -n "$B" addr add 192.0.2.2/24 dev ul0
  for s in "$A:$HA:203.0.113.1" "$B:$HB:203.0.113.2"; do
    IFS=: read -r site host addr <<<"$s"
    ip -n "$site" link add br0 type bridge; ip -n "$site" link set br0 up
    veth "$host" eth0 "$site" hv 1400
    ip -n "$site" link set hv master br0
    ip -n "$host" addr add "$addr/24" dev eth0
  done
  for pair in $DUTS; do
    start_dut "$pair" "$A" tpa 0 192.0.2.1 192.0.2.2 br0; pa=$DUTPID
    start_dut "$pair" "$B" tpb 1 192.0.2.2 192.0.2.1 br0; pb=$DUTPID
    wait_for 15 ip netns exec "$HA" ping -c 1 -W 1 203.0.113.2 || die "$pair: no connectivity through the pseudowire"
    for run in $(seq 1 "$RUNS"); do
      spawn ip netns exec "$HB" iperf3 -s -1 -B 203.0.113.2 -p 5201 >/dev/null 2>&1; local srv=$LASTPID
      wait_for 5 bash -c "ip netns exec $HB ss -ltn | grep -q 203.0.113.2:5201"
      local out="$TMP/iperf-$pair-$run.json" ta0 tb0 ta1 tb1
      ta0=$(cputicks "$pa"); tb0=$(cputicks "$pb")
      timeout $((SECS + WARM + 15)) ip netns exec "$HA" iperf3 -c 203.0.113.2 -p 5201 -t $((SECS + WARM)) -O "$WARM" -J >"$out" 2>/dev/null || true
      ta1=$(cputicks "$pa"); tb1=$(cputicks "$pb")
      stop_pid "$srv"
      local bps retr
      bps=$(node -e 'try{const j=require(process.argv[1]);console.log(Math.round(j.end.sum_received.bits_per_second))}catch{console.log(0)}' "$out")
      retr=$(node -e 'try{const j=require(process.argv[1]);console.log(j.end.sum_sent.retransmits??0)}catch{console.log(0)}' "$out")
      echo "{\"kind\":\"tcp\",\"dut\":\"$pair\",\"run\":$run,\"bps\":$bps,\"retransmits\":$retr,\"ticks\":[$((ta1 - ta0)),$((tb1 - tb0))],\"hz\":$HZ,\"secs\":$((SECS + WARM))}" >>"$RAW"
      log "$pair<->$pair iperf3 TCP run $run: $(( bps / 1000000 )) Mbit/s, retransmits $retr"
    done
    stop_dut "$pair" "$A" "$pa"; stop_dut "$pair" "$B" "$pb"
    wait_for 10 bash -c "! ip -n $A link show tpa && ! ip -n $B link show tpb" || die "taps of $pair were not removed"
  done
  ns_del "$HA"; ns_del "$HB"; ns_del "$A"; ns_del "$B"
}

[[ $HALF == 1 ]] && half_tunnel
[[ $E2E == 1 ]] && end_to_end

mkdir -p "$HERE/results"
cp "$RAW" "$HERE/results/latest-$MODE-raw.jsonl"
node "$HERE/report.mjs" "$RAW" "$HERE/results" "$MODE" "$RUNS" "$SECS" "$WARM"
