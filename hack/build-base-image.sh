#!/usr/bin/env bash
# Builds the Python base image localhost/bullflow-python:3.11-bookworm from Debian packages.
#
# Registry images cannot be pulled on the development and CI machines, so the base the
# Dockerfiles' PYTHON_IMAGE argument names is made here: a debootstrap (minbase) of Debian
# bookworm with python3.11 (the same Python as python:3.11-slim-bookworm) plus python3-venv,
# python-is-python3 (so `python` exists, as in the public image), ca-certificates and passwd
# (groupadd/useradd for the Dockerfiles' RUN steps). Apt lists, docs and man pages are removed,
# then the root filesystem is imported with buildah (FROM scratch + the tree, no daemon).
#
# The image carries a label with the hash of this script; an image whose label matches is kept,
# so a warm run costs one `buildah inspect`. Packages come from the Debian mirror this machine's
# apt uses (the first deb.debian.org-style URI in /etc/apt/sources.list*).
#
# Usage: hack/build-base-image.sh [--force]
set -euo pipefail

BASE_IMAGE=${BULLFLOW_PYTHON_IMAGE:-localhost/bullflow-python:3.11-bookworm}
CACHE=${BULLFLOW_CACHE:-$HOME/.cache/bullflow}
PACKAGES=python3.11,python3-venv,python-is-python3,ca-certificates,passwd
LABEL=io.bullflow.recipe-hash
force=0
[[ ${1:-} == --force ]] && force=1

recipe_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
current=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" \
  "$BASE_IMAGE" 2>/dev/null || true)
if [[ $force == 0 && $current == "$recipe_hash" ]]; then
  echo "[base-image] $BASE_IMAGE is up to date ($recipe_hash)"
  exit 0
fi

# The mirror apt already uses here (deb822 or one-line format); Debian's own name otherwise.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
  | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/tmp}/bullflow-base.XXXXXX")
ctr=""
cleanup() {
  [[ -n $ctr ]] && buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "[base-image] debootstrap bookworm from $mirror (minbase + ${PACKAGES})"
rootfs=$work/rootfs
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# What the slim image leaves out too: package lists, caches, docs, man pages, logs.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# apt inside a build must see the same mirror (debootstrap wrote it already; make it explicit).
echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
# A container runtime writes its own resolv.conf and hosts; the build host's must not leak in.
: >"$rootfs/etc/resolv.conf"
rm -f "$rootfs/etc/hostname"

tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
ctr=$(buildah from scratch)
buildah add "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config \
  --env LANG=C.UTF-8 \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd python3 \
  --label "$LABEL=$recipe_hash" \
  --label "org.opencontainers.image.description=Debian bookworm minbase + python3.11, built by bullflow's hack/build-base-image.sh" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
ctr=""
echo "[base-image] built $BASE_IMAGE ($(buildah inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE" | cut -c1-12))"
