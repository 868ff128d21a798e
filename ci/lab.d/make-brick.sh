#!/usr/bin/env bash
# Runs INSIDE a lab node (ci/lab brick NODE): a hand-made brick for tests that run without the agent. Appends
# partition 3 (SIZE, default 1GiB) to the card, makes XFS on it (-i size=512) and mounts it at /srv/gluster/brick1,
# with the brick directory /srv/gluster/brick1/brick. Idempotent. The agent's prepare-disk does the real job.
#
# usage: make-brick.sh DEVICE [SIZE]
set -euo pipefail
dev=${1:?usage: make-brick.sh DEVICE [SIZE]}
size=${2:-1GiB}
name=${dev#/dev/}
mnt=/srv/gluster/brick1

# Kernel partitions and device nodes, checked against sysfs: a partition re-read renumbers the 259:N minors, so a
# node made earlier may now point at another partition (or another disk).
sync_nodes() {
  local sys part majmin
  partx -a "$dev" 2>/dev/null || true
  for sys in /sys/block/"$name"/"$name"p*; do
    [ -e "$sys/dev" ] || continue
    part=/dev/$(basename "$sys")
    majmin=$(cat "$sys/dev")
    if [ -b "$part" ] && [ "$(stat -c '%Hr:%Lr' "$part")" = "$majmin" ]; then continue; fi
    rm -f "$part"
    mknod "$part" b "${majmin%:*}" "${majmin#*:}"
  done
}

if ! sfdisk --dump "$dev" | grep -q "^${dev}p3 "; then
  # --no-tell-kernel: sfdisk's re-read (BLKRRPART) drops p1/p2 here and does not scan them back; partx adds them.
  echo "size=$size, type=83" | sfdisk --quiet --no-tell-kernel --append "$dev"
fi
sync_nodes
part=${dev}p3
[ -b "$part" ] || { echo "make-brick: $part did not appear" >&2; exit 1; }
if [ -z "$(blkid -p -o value -s TYPE "$part" 2>/dev/null || true)" ]; then
  mkfs.xfs -q -f -i size=512 -L brick "$part"
fi
mkdir -p "$mnt"
mountpoint -q "$mnt" || mount -t xfs "$part" "$mnt"
mkdir -p "$mnt/brick"
echo "$part on $mnt"
