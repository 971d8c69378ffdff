#!/usr/bin/env bash
# Set up l2tpd as a systemd service from the installed npm package (`npm install -g` of the
# tarball): nothing is copied, the units run the package where npm put it.
#
#   $UNITDIR/l2tpd.{service,socket}  (default /etc/systemd/system) with this node and this
#                                    package's dist/daemon/main.js in ExecStart
#   $CONFDIR/l2tpd.json              (default /etc/l2tpd) empty config, only if absent;
#                                    l2tpd.json.example beside it
#   $TMPFILESDIR/l2tpd.conf          (default /etc/tmpfiles.d) /run/l2tpd owned by l2tpd at
#                                    boot, before l2tpd.socket binds in it
#   system user and group l2tpd      owner of $CONFDIR (the daemon rewrites its config)
#   /dev/net/tun                     group l2tpd 0660 where it is not world read-write
# then `systemctl daemon-reload` when systemd is PID 1. Nothing is started or enabled:
# `systemctl enable --now l2tpd` does that. Running it again (after an upgrade) rewrites the
# units and keeps an existing config.
#
# Installed as the command `l2tpd-install-service`. Run from a source checkout (as
# `npm run install-service`), it first packs the checkout and installs the tarball with
# `npm install -g`, then runs the installed copy of itself.
#
# DESTDIR=/some/dir stages the units and config under that directory instead (packaging,
# tests): no user is created, nothing is chowned, systemctl is not called.
# Environment: DESTDIR, CONFDIR, UNITDIR, TMPFILESDIR, NODE (absolute path of node; default:
# `command -v node`).
set -euo pipefail

say() { printf 'l2tpd-install-service: %s\n' "$*"; }
die() { printf 'l2tpd-install-service: error: %s\n' "$*" >&2; exit 1; }

# The package directory: this script is <package>/scripts/install-service.sh (npm links the
# command to it, so resolve the link first).
PKGDIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
DESTDIR=${DESTDIR:-}
CONFDIR=${CONFDIR:-/etc/l2tpd}
UNITDIR=${UNITDIR:-/etc/systemd/system}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
NODE=${NODE:-$(command -v node || true)}

# ---------------------------------------------------------------- from a source checkout
if [[ -d "$PKGDIR/src" && -f "$PKGDIR/tsconfig.json" ]]; then
  [[ -z "$DESTDIR" ]] || die "DESTDIR works from the installed package: npm install -g --prefix DIR l2tpd-*.tgz, then DIR/bin/l2tpd-install-service"
  [[ $(id -u) -eq 0 ]] || die "must run as root (npm install -g, systemd units, user l2tpd)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  say "packing $PKGDIR (npm pack builds dist/)"
  (cd "$PKGDIR" && npm pack --silent --pack-destination "$tmp" >/dev/null)
  tarball=$(ls "$tmp"/l2tpd-*.tgz)
  say "npm install -g $(basename "$tarball")"
  npm install -g --no-audit --no-fund --allow-scripts="netlink,$tarball" "$tarball"
  installed="$(npm root -g)/l2tpd/scripts/install-service.sh"
  [[ -f "$installed" ]] || die "npm install -g did not install $installed"
  exec bash "$installed"
fi

# ---------------------------------------------------------------- checks
[[ -n "$NODE" && "$NODE" == /* ]] || die "node not found in PATH (set NODE=/absolute/path/to/node)"
for p in "$CONFDIR" "$UNITDIR" "$TMPFILESDIR"; do
  [[ "$p" == /* ]] || die "\"$p\": paths must be absolute"
done
for f in "$PKGDIR/dist/daemon/main.js" "$PKGDIR/native-bindings/build/Release/l2tpd_native.node"; do
  [[ -f "$f" ]] || die "$f is missing: is this an installed l2tpd package (npm install -g l2tpd-*.tgz)?"
done
# The unit has ProtectHome=yes and PrivateTmp=yes: the service cannot see node or l2tpd under
# a home directory or /tmp. Fatal for a real install; staging (DESTDIR) is only warned.
for p in "$NODE" "$PKGDIR"; do
  real=$(readlink -f "$p")
  case "$real" in
    /home/*|/root/*|/run/user/*|/tmp/*|/var/tmp/*)
      msg="$real is under a home directory or /tmp, which the service cannot see (ProtectHome=yes, PrivateTmp=yes); install node and l2tpd under a system prefix (for example npm install -g --prefix /usr/local)"
      if [[ -n "$DESTDIR" ]]; then say "warning: $msg"; else die "$msg"; fi;;
  esac
done
if [[ -z "$DESTDIR" && $(id -u) -ne 0 ]]; then
  die "must run as root (or set DESTDIR to stage into a directory)"
fi

# ---------------------------------------------------------------- units
mkdir -p "$DESTDIR$UNITDIR"
for unit in l2tpd.service l2tpd.socket; do
  sed -e "s#/usr/bin/node #$NODE #" -e "s#/usr/lib/node_modules/l2tpd/#$PKGDIR/#g" -e "s#/etc/l2tpd#$CONFDIR#g" \
    "$PKGDIR/systemd/$unit" > "$DESTDIR$UNITDIR/$unit.tmp"
  chmod 0644 "$DESTDIR$UNITDIR/$unit.tmp"
  mv "$DESTDIR$UNITDIR/$unit.tmp" "$DESTDIR$UNITDIR/$unit"
  say "installed $UNITDIR/$unit (ExecStart: $NODE $PKGDIR/dist/daemon/main.js)"
done
mkdir -p "$DESTDIR$TMPFILESDIR"
install -m 0644 "$PKGDIR/systemd/l2tpd.tmpfiles" "$DESTDIR$TMPFILESDIR/l2tpd.conf"
say "installed $TMPFILESDIR/l2tpd.conf (/run/l2tpd for l2tpd.socket at boot)"

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
install -m 0644 "$PKGDIR/systemd/l2tpd.example.json" "$DESTDIR$CONFDIR/l2tpd.json.example"

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
  # Now, not only at the next boot: l2tpd.socket may be started before the service ever runs.
  systemd-tmpfiles --create "$TMPFILESDIR/l2tpd.conf"
  systemctl daemon-reload
  say "systemctl daemon-reload done. Start with: systemctl enable --now l2tpd (optionally l2tpd.socket)"
else
  say "systemd is not PID 1 here (PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo unknown)): skipped systemctl daemon-reload"
fi
