#!/usr/bin/env bash
# Runs INSIDE a freshly created lab node (its mount + UTS + PID namespaces and its network namespace), once per boot.
# Gives the node a private /run, a copy-on-write /etc, /var/lib and /var/log, its own glusterd/docker/agent state
# directories, /srv and /mnt, and its hostname. On the node's first boot it also writes the files a fresh card has
# (/etc/hostname, /etc/hosts, /etc/machine-id) and the avahi config the lab needs.
#
# Environment (set by ci/lab): NODE_DIR (the node's state directory on the host), NODE_HOSTNAME, FIRST_BOOT (1/0),
# NODE_CARD (the node's loop device, /dev/loopN).
set -euo pipefail
: "${NODE_DIR:?}" "${NODE_HOSTNAME:?}" "${FIRST_BOOT:?}" "${NODE_CARD:?}"

# 1. The new mount namespace is a copy of the host's: it holds every loop and FUSE mount other programs had at that
# moment. Dropping them here keeps this node from pinning someone else's filesystem (their umount + losetup -d on
# the host would leave the loop device busy for as long as this node lives). The same goes for the nsfs mounts under
# /run/netns: a copy would keep other nodes' (and other labs') network namespaces alive after `ip netns del`.
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; fstype = $(i + 1); src = $(i + 2);
       if (src ~ /^\/dev\/(loop|nbd)/ || fstype ~ /^fuse/ || fstype == "nsfs" || $5 ~ /^\/run\/netns/) print $5 }' /proc/self/mountinfo |
  sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done

# 2. Private /run (glusterd's socket, docker's socket and exec root, avahi's socket and pid live there).
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /run/avahi-daemon /run/gluster /run/user /run/sshd
chmod 1777 /run/lock

# 3. A private /dev holding the basic character devices and only this node's card (and its partitions), as a Pi
# sees only its own SD card. Every card is a copy of one image, so all carry the same PARTUUIDs: with the host's
# /dev, `mount PARTUUID=...-03` (or blkid) on one node could find another node's brick. Partition nodes are made
# here from sysfs; after changing the table, whoever changed it makes the new ones (no udev in a lab node).
dev=$(mktemp -d /run/lab-dev.XXXXXX)
mount -t tmpfs -o mode=0755,nosuid tmpfs "$dev"
for n in null zero full random urandom tty console fuse kmsg loop-control ptmx; do
  if [ -e "/dev/$n" ]; then cp -a "/dev/$n" "$dev/"; fi
done
card=${NODE_CARD#/dev/}
majmin=$(cat "/sys/block/$card/dev")
mknod -m 0660 "$dev/$card" b "${majmin%:*}" "${majmin#*:}"
for sys in /sys/block/"$card"/"$card"p*; do
  [ -e "$sys/dev" ] || continue
  majmin=$(cat "$sys/dev")
  mknod -m 0660 "$dev/$(basename "$sys")" b "${majmin%:*}" "${majmin#*:}"
done
mkdir -p "$dev/pts" "$dev/shm" "$dev/net"
[ -e /dev/net/tun ] && cp -a /dev/net/tun "$dev/net/"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"
ln -s /proc/self/fd/1 "$dev/stdout"
ln -s /proc/self/fd/2 "$dev/stderr"
mount --bind /dev/pts "$dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dev/shm"
mount --move "$dev" /dev
rmdir "$dev"

# 4. Copy-on-write system directories: the node sees the host's packages and config, its writes stay its own.
overlay() { # overlay TARGET NAME
  mkdir -p "$NODE_DIR/fs/$2.upper" "$NODE_DIR/fs/$2.work"
  local deadline=$((SECONDS + 20))
  # After a power cut the old namespace's overlay may take a moment to be released ("upperdir is in-use").
  until mount -t overlay overlay -o "lowerdir=$1,upperdir=$NODE_DIR/fs/$2.upper,workdir=$NODE_DIR/fs/$2.work" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      mount -t overlay overlay -o "lowerdir=$1,upperdir=$NODE_DIR/fs/$2.upper,workdir=$NODE_DIR/fs/$2.work" "$1"
    fi
    sleep 0.1
  done
}
bind() { # bind NAME TARGET: a fresh per-node directory over TARGET
  mkdir -p "$NODE_DIR/fs/$1" "$2"
  mount --bind "$NODE_DIR/fs/$1" "$2"
}
overlay /etc etc
overlay /var/lib var-lib
overlay /var/log var-log
# Never inherit state the host (or a test run on it) may have: these start empty on a fresh card.
if [ ! -e "$NODE_DIR/fs/glusterd" ]; then
  # Only what the package ships (volume option groups, hooks); never a host glusterd.info (its UUID) or peers.
  mkdir -p "$NODE_DIR/fs/glusterd"
  for d in groups hooks; do
    if [ -d "/var/lib/glusterd/$d" ]; then cp -a "/var/lib/glusterd/$d" "$NODE_DIR/fs/glusterd/"; fi
  done
fi
bind glusterd /var/lib/glusterd
bind docker /var/lib/docker
bind agent-state /var/lib/firstboot-agent
bind agent-etc /etc/firstboot-agent
bind srv /srv
bind mnt /mnt
mkdir -p /srv/gluster /mnt/shared /var/log/glusterfs /etc/avahi/services

if [ "$FIRST_BOOT" = 1 ]; then
  echo "$NODE_HOSTNAME" > /etc/hostname
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n\n127.0.1.1\t%s\n' \
    "$NODE_HOSTNAME" > /etc/hosts
  # No DNS server exists on the lab's network: without this, every reverse lookup (glusterd does them) waits for
  # the host's resolver to time out, and a peer probe takes 12 s instead of 0.1 s.
  rm -f /etc/resolv.conf
  echo "# ci/lab: no DNS server on the lab network; names resolve by /etc/hosts and mDNS" > /etc/resolv.conf
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > /etc/machine-id
  echo >> /etc/machine-id
  # Identities a host file would otherwise give every node alike (the /etc and /var/lib overlays show the host's
  # files): dockerd's engine id comes from /etc/docker/key.json, D-Bus reads /var/lib/dbus/machine-id.
  rm -f /etc/docker/key.json
  if [ -e /var/lib/dbus/machine-id ] || [ -L /var/lib/dbus/machine-id ]; then
    rm -f /var/lib/dbus/machine-id
    ln -s /etc/machine-id /var/lib/dbus/machine-id
  fi
  # As Raspberry Pi OS ships it, except: no D-Bus in a lab node, and only the lab link.
  cat > /etc/avahi/avahi-daemon.conf <<'CONF'
# written by ci/lab: Raspberry Pi OS defaults, without D-Bus (no system bus in a lab node), on eth0 only
[server]
use-ipv4=yes
use-ipv6=yes
allow-interfaces=eth0
enable-dbus=no
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=yes

[publish]
publish-hinfo=no
publish-workstation=no

[reflector]

[rlimits]
CONF
fi
hostname "$(cat /etc/hostname)"

# 5. What systemd does with /etc/fstab at boot, for local filesystems (the brick): mount every entry under /srv or
# /mnt that is not mounted yet. `nofail` semantics: a failure is logged, the boot goes on. Network filesystems
# (glusterfs, _netdev) are mounted by ci/lab once the node's daemons answer.
if [ "$FIRST_BOOT" = 0 ]; then
  # findmnt exits 1 when fstab lists nothing (a node without a brick yet): not an error.
  { findmnt --fstab -n -r -o TARGET,FSTYPE,OPTIONS || true; } | while read -r target fstype options; do
    case "$target" in /srv/*|/mnt/*) ;; *) continue ;; esac
    case "$fstype,$options" in glusterfs,*|nfs*|*_netdev*) continue ;; esac
    mkdir -p "$target"
    mountpoint -q "$target" || mount "$target" || echo "boot: mount $target failed (as nofail: boot goes on)" >&2
  done
fi
