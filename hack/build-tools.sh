#!/usr/bin/env bash
# Builds the local control plane's binaries from source through the Go module proxy.
# Output: $BULLFLOW_CACHE/<tool>-<version>/<binary>, reused by every clone on the machine.
set -euo pipefail

CACHE="${BULLFLOW_CACHE:-$HOME/.cache/bullflow}"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
# Prometheus 3.x is published to the module proxy as v0.3XX.Y (v0.316.0 = Prometheus 3.16.0).
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[build-tools] %s\n' "$*" >&2; }

# Builds Go packages inside a throwaway consumer module ($1 = dir name), so that modules whose
# go.mod has replace directives (kubernetes, etcd) can be built at a pinned version.
consumer_module() {
  local dir="$1"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init "bullflow.local/$(basename "$dir")" >/dev/null 2>&1
}

# A consumer module requiring k8s.io/kubernetes at $K8S_VERSION, in the current directory.
kubernetes_consumer_module() {
  consumer_module "$1"
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  local modfile
  modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
  # kubernetes' go.mod replaces every staging module with ./staging/src/...; point each at its
  # published v0.Y.Z twin instead.
  local staging_version="v0.${K8S_VERSION#v1.}"
  local module
  for module in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile"); do
    go mod edit -replace "$module=$module@$staging_version"
  done
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
}

kubernetes_ldflags() {
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitTreeState=clean"
}

build_kubernetes_cmds() { # out-dir tool...: go build each k8s.io/kubernetes/cmd/<tool> into out-dir
  local out="$1"; shift
  local tools=("$@") missing=0 t
  for t in "${tools[@]}"; do [[ -x "$out/$t" ]] || missing=1; done
  [[ $missing == 0 ]] && { log "$(basename "$out") cached"; return; }
  log "building $(basename "$out") (${tools[*]})"
  kubernetes_consumer_module "$CACHE/src/$(basename "$out")"
  local ldflags
  ldflags="$(kubernetes_ldflags)"
  mkdir -p "$out.tmp"
  for t in "${tools[@]}"; do
    log "  go build $t"
    go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$t" "k8s.io/kubernetes/cmd/$t"
  done
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_kubernetes() {
  build_kubernetes_cmds "$CACHE/kubernetes-$K8S_VERSION" \
    kube-apiserver kube-controller-manager kube-scheduler kubectl
}

# The real node's binaries (tests/harness/node.py), in a directory of their own: only the
# real-pod tests need them, and a rebuild of the control plane must not delete them.
build_kubernetes_node() {
  build_kubernetes_cmds "$CACHE/kubernetes-node-$K8S_VERSION" kubelet kube-proxy
}

build_etcd() {
  local out="$CACHE/etcd-$ETCD_VERSION"
  [[ -x "$out/etcd" ]] && { log "etcd $ETCD_VERSION cached"; return; }
  log "building etcd $ETCD_VERSION"
  consumer_module "$CACHE/src/etcd-$ETCD_VERSION"
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  mkdir -p "$out.tmp"
  go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" .
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_go_install() { # name version package [ldflags] [build tags]
  local name="$1" version="$2" pkg="$3" ldflags="${4:-}" tags="${5:-}"
  local out="$CACHE/$name-$version"
  [[ -x "$out/$name" ]] && { log "$name $version cached"; return; }
  log "building $name $version"
  # A directory of its own: two builds at once (two `make bootstrap`s) must not share one.
  local tmp
  tmp="$(mktemp -d "$out.tmp.XXXXXX")" && chmod 755 "$tmp"
  GOFLAGS=-buildvcs=false GOBIN="$tmp" go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" \
    "$pkg@$version"
  if [[ -x "$out/$name" ]]; then  # the other build finished first: same binary, keep it
    rm -rf "$tmp"
  else
    rm -rf "$out" && mv "$tmp" "$out"
  fi
}

prometheus_version() { # v0.316.0 -> 3.16.0
  local minor="${PROMTOOL_VERSION#v0.}"
  minor="${minor%%.*}"
  echo "$((minor / 100)).$((minor % 100)).${PROMTOOL_VERSION##*.}"
}

main() {
  command -v go >/dev/null || { log "go is required"; exit 1; }
  mkdir -p "$CACHE"
  local start=$SECONDS
  local only="${1:-all}"
  case "$only" in
    all|cluster|etcd) build_etcd ;;&
    all|cluster|kubernetes) build_kubernetes ;;&
    all|node) build_kubernetes_node ;;&
    all|cluster|kwok) build_go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
                "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" ;;&
    all|cluster|helm) build_go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
                "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;&
    # remove_all_sd: without the service discoveries (cloud SDKs) promtool builds in a fraction
    # of the time; the tests use only `check rules` and `test rules`.
    all|promtool) build_go_install promtool "$PROMTOOL_VERSION" \
                github.com/prometheus/prometheus/cmd/promtool \
                "-X github.com/prometheus/common/version.Version=$(prometheus_version)" \
                remove_all_sd ;;&
    *) ;;
  esac
  log "tools ready in $((SECONDS - start))s; cache $(du -sh "$CACHE" 2>/dev/null | cut -f1) at $CACHE"
}

main "$@"
