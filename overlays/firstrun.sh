#!/bin/sh
# First-run script of a cluster image, in the style of Raspberry Pi Imager's firstrun.sh: the image builder copies
# it onto the FAT boot partition and appends to cmdline.txt
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
# On the first boot it:
#   - reads /boot/firmware/cluster-firstrun.env (all optional): CLUSTER_HOSTNAME_PREFIX, CLUSTER_WIFI_SSID,
#     CLUSTER_WIFI_PSK, CLUSTER_WIFI_COUNTRY, CLUSTER_USER, CLUSTER_SSH_AUTHORIZED_KEY;
#   - installs the agent (/usr/local/sbin/firstboot-agent, 0755), its config (/etc/firstboot-agent/cluster.toml,
#     0600) and its systemd unit, and enables the unit;
#   - REMOVES cluster.toml (it holds the cluster key) and the env file (it may hold the Wi-Fi key) from the FAT
#     partition, which anyone holding the card can read;
#   - sets the host name <prefix>-<short id> (from the agent's identity), Wi-Fi and an SSH key when given;
#   - removes the systemd.run tokens (and any root-growth token) from cmdline.txt, then itself.
# Safe to run again: each step checks before it changes anything.
#
# For tests, FIRSTRUN_ROOT (default: /) and FIRSTRUN_BOOT (default: /boot/firmware) point it at a fake system;
# with FIRSTRUN_ROOT set it changes nothing outside those two directories.
set -eu

ROOT=${FIRSTRUN_ROOT:-}
ROOT=${ROOT%/}
BOOT=${FIRSTRUN_BOOT:-/boot/firmware}
SELF=$0
AGENT=$ROOT/usr/local/sbin/firstboot-agent
CONFIG_DIR=$ROOT/etc/firstboot-agent
UNIT_DIR=$ROOT/etc/systemd/system

log() { echo "firstrun: $*" >&2; }

# Overwrites a file on the FAT partition with zeros before removing it, so its secret does not stay in free space.
scrub() {
  if [ -f "$1" ]; then
    size=$(wc -c < "$1")
    if [ "$size" -gt 0 ]; then
      dd if=/dev/zero of="$1" bs="$size" count=1 conv=notrunc,fsync status=none
    fi
    rm -f "$1"
  fi
}

if [ -f "$BOOT/cluster-firstrun.env" ]; then
  # shellcheck disable=SC1091
  . "$BOOT/cluster-firstrun.env"
fi
CLUSTER_HOSTNAME_PREFIX=${CLUSTER_HOSTNAME_PREFIX:-}
CLUSTER_WIFI_SSID=${CLUSTER_WIFI_SSID:-}
CLUSTER_WIFI_PSK=${CLUSTER_WIFI_PSK:-}
CLUSTER_WIFI_COUNTRY=${CLUSTER_WIFI_COUNTRY:-}
CLUSTER_USER=${CLUSTER_USER:-}
CLUSTER_SSH_AUTHORIZED_KEY=${CLUSTER_SSH_AUTHORIZED_KEY:-}

# --- the agent, its config and its unit ---
if [ -f "$BOOT/firstboot-agent" ]; then
  install -D -m 0755 "$BOOT/firstboot-agent" "$AGENT"
  log "installed $AGENT"
fi
if [ -f "$BOOT/cluster.toml" ]; then
  mkdir -p "$CONFIG_DIR"
  chmod 0700 "$CONFIG_DIR"
  install -m 0600 "$BOOT/cluster.toml" "$CONFIG_DIR/cluster.toml"
  sync
  scrub "$BOOT/cluster.toml"
  log "installed $CONFIG_DIR/cluster.toml and removed it from the boot partition"
elif [ ! -f "$CONFIG_DIR/cluster.toml" ]; then
  log "WARNING: no cluster.toml on $BOOT and none installed: the agent will not start until one is in $CONFIG_DIR"
fi
if [ -f "$BOOT/firstboot-agent.service" ]; then
  install -D -m 0644 "$BOOT/firstboot-agent.service" "$UNIT_DIR/firstboot-agent.service"
fi
if [ -f "$UNIT_DIR/firstboot-agent.service" ]; then
  # What `systemctl enable` does, done by hand so it works the same without a running systemd.
  mkdir -p "$UNIT_DIR/multi-user.target.wants"
  ln -sfn /etc/systemd/system/firstboot-agent.service "$UNIT_DIR/multi-user.target.wants/firstboot-agent.service"
  log "enabled firstboot-agent.service"
else
  log "WARNING: firstboot-agent.service is neither on $BOOT nor installed"
fi

# --- host name: <prefix>-<short id>, from the agent's own identity code ---
if [ -n "$CLUSTER_HOSTNAME_PREFIX" ] && [ -x "$AGENT" ]; then
  name=$("$AGENT" --config "$CONFIG_DIR/cluster.toml" identity --root "${ROOT:-/}" \
           --prefix "$CLUSTER_HOSTNAME_PREFIX" --hostname)
  old=$(cat "$ROOT/etc/hostname" 2>/dev/null || true)
  if [ "$old" != "$name" ]; then
    echo "$name" > "$ROOT/etc/hostname"
    if [ -f "$ROOT/etc/hosts" ] && grep -q '^127\.0\.1\.1' "$ROOT/etc/hosts"; then
      sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$name/" "$ROOT/etc/hosts"
    else
      printf '127.0.1.1\t%s\n' "$name" >> "$ROOT/etc/hosts"
    fi
    [ -n "$ROOT" ] || hostname "$name" || true
    log "host name $name"
  fi
fi

# --- Wi-Fi (NetworkManager, as Raspberry Pi OS Bookworm and later use) ---
if [ -n "$CLUSTER_WIFI_SSID" ]; then
  conn=$ROOT/etc/NetworkManager/system-connections/cluster-wifi.nmconnection
  if [ ! -f "$conn" ]; then
    mkdir -p "$(dirname "$conn")"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    umask 077
    {
      printf '[connection]\nid=cluster-wifi\nuuid=%s\ntype=wifi\n\n' "$uuid"
      printf '[wifi]\nmode=infrastructure\nssid=%s\nhidden=false\n\n' "$CLUSTER_WIFI_SSID"
      if [ -n "$CLUSTER_WIFI_PSK" ]; then
        printf '[wifi-security]\nkey-mgmt=wpa-psk\npsk=%s\n\n' "$CLUSTER_WIFI_PSK"
      fi
      printf '[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=default\nmethod=auto\n'
    } > "$conn"
    chmod 0600 "$conn"
    umask 022
    log "Wi-Fi connection for $CLUSTER_WIFI_SSID"
  fi
  # Raspberry Pi OS keeps Wi-Fi blocked until a country is set.
  for f in "$ROOT"/var/lib/systemd/rfkill/*:wlan; do
    if [ -e "$f" ]; then echo 0 > "$f"; fi
  done
  [ -n "$ROOT" ] || rfkill unblock wifi 2>/dev/null || true
fi
if [ -n "$CLUSTER_WIFI_COUNTRY" ] && [ -f "$BOOT/cmdline.txt" ]; then
  if ! grep -q "cfg80211.ieee80211_regdom=" "$BOOT/cmdline.txt"; then
    sed -i "1s/\$/ cfg80211.ieee80211_regdom=$CLUSTER_WIFI_COUNTRY/" "$BOOT/cmdline.txt"
  fi
fi

# --- SSH: an authorized key for the user, and the ssh service on from the next boot ---
if [ -n "$CLUSTER_SSH_AUTHORIZED_KEY" ]; then
  user=$CLUSTER_USER
  if [ -z "$user" ]; then
    user=$(awk -F: '$3 == 1000 { print $1; exit }' "$ROOT/etc/passwd" 2>/dev/null || true)
    user=${user:-pi}
  fi
  entry=$(awk -F: -v u="$user" '$1 == u { print $3 ":" $4 ":" $6; exit }' "$ROOT/etc/passwd" 2>/dev/null || true)
  if [ -n "$entry" ]; then
    owner=${entry%:*}
    home=$ROOT${entry##*:}
  else
    owner=1000:1000
    home=$ROOT/home/$user
  fi
  mkdir -p "$home/.ssh"
  keys=$home/.ssh/authorized_keys
  touch "$keys"
  if ! grep -qxF "$CLUSTER_SSH_AUTHORIZED_KEY" "$keys"; then
    echo "$CLUSTER_SSH_AUTHORIZED_KEY" >> "$keys"
    log "SSH key for $user"
  fi
  chmod 0700 "$home/.ssh"
  chmod 0600 "$keys"
  chown -R "$owner" "$home/.ssh"
  touch "$BOOT/ssh"
fi

# --- clean up: the env file (Wi-Fi key), the kernel command line, this script ---
scrub "$BOOT/cluster-firstrun.env"
if [ -f "$BOOT/cmdline.txt" ]; then
  # The systemd.run tokens, and root growth to the whole card (it would overrun the brick partition).
  sed -i -E \
    -e 's/(^| )systemd\.run(_success_action|_failure_action)?=[^ ]*//g' \
    -e 's/(^| )systemd\.unit=kernel-command-line\.target//g' \
    -e 's#(^| )init=/usr/lib/raspberrypi-sys-mods/firstboot##g' \
    -e 's/(^| )resize( |$)/\2/g' \
    -e 's/^ +//' \
    "$BOOT/cmdline.txt"
fi
case "$SELF" in
  "$BOOT"/*) rm -f "$SELF" ;;
esac
sync
log "done"
exit 0
