#!/usr/bin/env bash
# Install l2tpd as a systemd service:
#   $PREFIX (default /opt/l2tpd)        dist/, the native addon, production node_modules
#   /etc/systemd/system/l2tpd.{service,socket}   units with node and $PREFIX paths filled in
#   /etc/l2tpd/l2tpd.json               empty config, only if absent (l2tpd.json.example beside it)
#   /usr/local/bin/{l2tpd,l2tpctl}      symlinks into $PREFIX
#   system user and group l2tpd         owner of /etc/l2tpd (the daemon rewrites its config)
# then `systemctl daemon-reload` when systemd is PID 1.
#
# DESTDIR=/some/dir stages everything under that directory instead (packaging, tests): no user
# is created, nothing is chowned, systemctl is not called.
# Environment: DESTDIR, PREFIX, BINDIR (/usr/local/bin), CONFDIR (/etc/l2tpd),
# UNITDIR (/etc/systemd/system), NODE (absolute path of node; default: `command -v node`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/l2tpd}
BINDIR=${BINDIR:-/usr/local/bin}
CONFDIR=${CONFDIR:-/etc/l2tpd}
UNITDIR=${UNITDIR:-/etc/systemd/system}
NODE=${NODE:-$(command -v node || true)}

say() { printf 'install-service: %s\n' "$*"; }
die() { printf 'install-service: error: %s\n' "$*" >&2; exit 1; }

[[ -n "$NODE" && "$NODE" == /* ]] || die "node not found in PATH (set NODE=/absolute/path/to/node)"
for p in "$PREFIX" "$BINDIR" "$CONFDIR" "$UNITDIR"; do
  [[ "$p" == /* ]] || die "\"$p\": install paths must be absolute"
done
if [[ -z "$DESTDIR" && $(id -u) -ne 0 ]]; then
  die "must run as root (or set DESTDIR to stage into a directory)"
fi

cd "$ROOT"
ADDON=native-bindings/build/Release/l2tpd_native.node
if [[ ! -d node_modules ]]; then say "node_modules missing: npm ci"; npm ci; fi
if [[ ! -f "$ADDON" ]]; then say "native addon missing: node-gyp rebuild"; npx node-gyp rebuild --directory native-bindings; fi
if [[ ! -f dist/daemon/main.js || ! -f dist/cli/main.js ]]; then say "dist/ missing: npm run build"; npm run --silent build; fi

# ---------------------------------------------------------------- the program tree
TARGET="$DESTDIR$PREFIX"
STAGE="$TARGET.new.$$"
rm -rf "$STAGE"
mkdir -p "$STAGE/native-bindings/build/Release"
cp -a dist package.json "$STAGE/"
[[ -f package-lock.json ]] && cp -a package-lock.json "$STAGE/"
cp -a "$ADDON" "$STAGE/$ADDON"
cp -a systemd "$STAGE/systemd"
# Production dependencies only, as npm resolved them (nested node_modules keep their place).
npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2 | while read -r dep; do
  rel=${dep#"$ROOT"/}
  [[ "$rel" == node_modules/* && -d "$dep" ]] || continue
  mkdir -p "$STAGE/$(dirname "$rel")"
  [[ -e "$STAGE/$rel" ]] || cp -a "$dep" "$STAGE/$rel"
done
[[ -d "$STAGE/node_modules/pino" && -d "$STAGE/node_modules/prom-client" ]] || die "production dependencies were not copied (npm ls failed?)"
chmod 0755 "$STAGE/dist/daemon/main.js" "$STAGE/dist/cli/main.js"
# Swap in the new tree (an upgrade keeps the old one until the new one is complete).
if [[ -e "$TARGET" ]]; then rm -rf "$TARGET.old"; mv "$TARGET" "$TARGET.old"; fi
mkdir -p "$(dirname "$TARGET")"
mv "$STAGE" "$TARGET"
rm -rf "$TARGET.old"
say "installed program tree in $TARGET"

# ---------------------------------------------------------------- units
mkdir -p "$DESTDIR$UNITDIR"
for unit in l2tpd.service l2tpd.socket; do
  sed -e "s#/usr/bin/node #$NODE #" -e "s#/opt/l2tpd/#$PREFIX/#g" -e "s#/etc/l2tpd#$CONFDIR#g" \
    "systemd/$unit" > "$DESTDIR$UNITDIR/$unit"
  chmod 0644 "$DESTDIR$UNITDIR/$unit"
  say "installed $UNITDIR/$unit"
done

# ---------------------------------------------------------------- config
mkdir -p "$DESTDIR$CONFDIR"
chmod 0750 "$DESTDIR$CONFDIR"
if [[ -e "$DESTDIR$CONFDIR/l2tpd.json" ]]; then
  say "kept existing $CONFDIR/l2tpd.json"
else
  printf '{\n  "tunnels": [],\n  "sessions": []\n}\n' > "$DESTDIR$CONFDIR/l2tpd.json"
  chmod 0640 "$DESTDIR$CONFDIR/l2tpd.json"
  say "created $CONFDIR/l2tpd.json (empty: add tunnels with l2tpctl)"
fi
install -m 0644 systemd/l2tpd.example.json "$DESTDIR$CONFDIR/l2tpd.json.example"

# ---------------------------------------------------------------- commands
mkdir -p "$DESTDIR$BINDIR"
ln -sfn "$PREFIX/dist/daemon/main.js" "$DESTDIR$BINDIR/l2tpd"
ln -sfn "$PREFIX/dist/cli/main.js" "$DESTDIR$BINDIR/l2tpctl"
say "linked $BINDIR/l2tpd and $BINDIR/l2tpctl"

# ---------------------------------------------------------------- user, ownership, systemd
if [[ -n "$DESTDIR" ]]; then
  say "DESTDIR set: skipped creating user l2tpd, chown of $CONFDIR and systemctl (do them on the target)"
  exit 0
fi
if ! getent passwd l2tpd >/dev/null; then
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  useradd --system --user-group --no-create-home --home-dir /var/lib/l2tpd --shell "$nologin" \
    --comment "l2tpd pseudowire daemon" l2tpd
  say "created system user l2tpd"
fi
chown l2tpd:l2tpd "$CONFDIR" "$CONFDIR/l2tpd.json"
# The service opens /dev/net/tun as user l2tpd (DeviceAllow= only lifts the cgroup filter).
# systemd's udev rules make it 0666; where it is not world read-write, grant group l2tpd.
tunmode=$(stat -c %a /dev/net/tun 2>/dev/null || echo missing)
if [[ -c /dev/net/tun && $tunmode != 666 ]]; then
  mkdir -p /etc/udev/rules.d
  echo 'KERNEL=="tun", GROUP="l2tpd", MODE="0660"' > /etc/udev/rules.d/60-l2tpd-tun.rules
  chgrp l2tpd /dev/net/tun && chmod 0660 /dev/net/tun
  say "/dev/net/tun was $tunmode: now group l2tpd 0660 (and udev rule 60-l2tpd-tun.rules)"
fi
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  say "systemctl daemon-reload done. Start with: systemctl enable --now l2tpd (optionally l2tpd.socket)"
else
  say "systemd is not PID 1 here (PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo unknown)): skipped systemctl daemon-reload"
fi
