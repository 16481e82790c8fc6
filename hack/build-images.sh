#!/usr/bin/env bash
# `make images`: builds the operator and worker images from their Dockerfiles with buildah (no
# daemon), on the Python base hack/build-base-image.sh makes from Debian packages (registry
# images cannot be pulled here), and exports each as a docker-archive for containerd:
#
#   $BULLFLOW_CACHE/images/bullflow-operator.tar  localhost/bullflow-operator:<version> and :dev
#   $BULLFLOW_CACHE/images/bullflow-worker.tar    localhost/bullflow-worker:<version> and :dev
#
# (BULLFLOW_CACHE defaults to ~/.cache/bullflow.) Load one into a node's containerd with
# `ctr -n k8s.io images import <archive>`; both tags come along.
#
# Cache: each image carries a label with the hash of its inputs (Dockerfile, .dockerignore,
# sources, constraints, this script and the base image's id); an image whose label matches is
# not rebuilt, and an archive whose `.inputs-hash` file matches is not re-exported, so a warm
# run costs a few `buildah inspect` calls.
#
# Usage:
#   hack/build-images.sh                    build what changed, export the archives
#   hack/build-images.sh --print-archives   print `<name> <image> <archive>` per image, one a
#                                           line (the :dev tag), and build nothing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BULLFLOW_CACHE:-$HOME/.cache/bullflow}
ARCHIVES=$CACHE/images
BASE_IMAGE=${BULLFLOW_PYTHON_IMAGE:-localhost/bullflow-python:3.11-bookworm}
LABEL=io.bullflow.inputs-hash
NAMES=(operator worker)

version=$(sed -nE 's/^__version__ = "([^"]+)"/\1/p' "$ROOT/operator/bullflow/__init__.py")
[[ -n $version ]] || { echo "[images] no __version__ in operator/bullflow/__init__.py" >&2; exit 1; }

repository() { echo "localhost/bullflow-$1"; }
archive() { echo "$ARCHIVES/bullflow-$1.tar"; }

if [[ ${1:-} == --print-archives ]]; then
  for name in "${NAMES[@]}"; do
    echo "$name $(repository "$name"):dev $(archive "$name")"
  done
  exit 0
fi
[[ $# == 0 ]] || { echo "usage: $0 [--print-archives]" >&2; exit 2; }

# name -> build context, Dockerfile, and the inputs (relative to the repository) it copies.
context() { case $1 in operator) echo "$ROOT" ;; worker) echo "$ROOT/worker-image" ;; esac; }
dockerfile() { case $1 in operator) echo operator/Dockerfile ;; worker) echo worker-image/Dockerfile ;; esac; }
inputs() {
  local worker=(worker-image/pyproject.toml worker-image/README.md worker-image/bullflow_worker)
  case $1 in
    operator) echo operator/Dockerfile .dockerignore pyproject.toml constraints.txt operator/bullflow "${worker[@]}" ;;
    worker) echo worker-image/Dockerfile worker-image/.dockerignore worker-image/constraints.txt "${worker[@]}" ;;
  esac
}

image_label() {
  buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}
image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }

inputs_hash() {
  local base_id=$1 name=$2
  # shellcheck disable=SC2046 # inputs() is a list of paths without spaces
  {
    (cd "$ROOT" && find $(inputs "$name") -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
      ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum <"${BASH_SOURCE[0]}"
    echo "base $base_id"
  } | sha256sum | cut -c1-16
}

bash "$ROOT/hack/build-base-image.sh"
base_id=$(image_id "$BASE_IMAGE")
host_ca=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
[[ -f $host_ca ]] && ca_mount=(--volume "$host_ca:$host_ca:ro")
mkdir -p "$ARCHIVES"

for name in "${NAMES[@]}"; do
  repo=$(repository "$name")
  hash=$(inputs_hash "$base_id" "$name")
  if [[ $(image_label "$repo:dev") == "$hash" && $(image_label "$repo:$version") == "$hash" ]]; then
    echo "[images] $repo:$version is up to date ($hash)"
  else
    echo "[images] building $repo:$version ($hash)"
    previous=$(image_id "$repo:dev")
    # chroot isolation: RUN steps need no OCI runtime (crun refuses these hosts' hybrid cgroups)
    # and share the host's network, which pip needs to reach PyPI. They also see the host's CA
    # bundle (Debian's pip reads that file), so a TLS-inspecting proxy the host trusts works;
    # a RUN-time mount is not committed into the image.
    buildah bud --quiet --isolation chroot --pull=never "${ca_mount[@]}" \
      --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --label "$LABEL=$hash" \
      -f "$ROOT/$(dockerfile "$name")" -t "$repo:$version" -t "$repo:dev" "$(context "$name")" >/dev/null
    # The replaced image is now untagged: drop it so rebuilds do not pile up on disk.
    if [[ -n $previous && $previous != "$(image_id "$repo:dev")" ]]; then
      buildah rmi "$previous" >/dev/null 2>&1 || true
    fi
  fi
  tar_path=$(archive "$name")
  if [[ -f $tar_path && $(cat "$tar_path.inputs-hash" 2>/dev/null) == "$hash" ]]; then
    continue
  fi
  rm -f "$tar_path.inputs-hash"
  # podman reads the same storage as buildah; -m keeps both tags in one docker-archive. Written
  # aside and renamed, so a concurrent run (another clone, a test's fixture) never reads half.
  partial=$(mktemp "$tar_path.XXXXXX")
  podman save --quiet -m --format docker-archive -o "$partial" "$repo:$version" "$repo:dev"
  chmod 0644 "$partial"
  mv "$partial" "$tar_path"
  echo "$hash" >"$tar_path.inputs-hash"
  echo "[images] exported $tar_path"
done
