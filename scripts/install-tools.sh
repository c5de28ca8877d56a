#!/usr/bin/env bash
# install-tools.sh builds the pinned Consul, Nomad and nomad-autoscaler agents
# from the Go module proxy and installs the pinned Go tools, caching
# everything outside the repo keyed by version so a second run takes seconds.
# With CI=true it also installs Debian's chromium (for the Nomad UI browser
# test) when no Chromium is on the machine.
#
# Usage: scripts/install-tools.sh [consul|nomad|nomad-autoscaler|chromium|agents|golangci-lint|gotestsum|all]...
#        scripts/install-tools.sh --print-bin
# Prints the cache's bin directory on the last line of stdout.
#
# Environment:
#   TIDEPOOL_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tidepool)
set -euo pipefail

CONSUL_VERSION=v1.22.0
NOMAD_VERSION=v1.11.3
# Cache key of the Nomad build: bump the suffix when the build flags change.
NOMAD_BUILD=$NOMAD_VERSION-ui
# The only nomad/api pseudo-version the module proxy serves for Nomad v1.11.3.
NOMAD_API_VERSION=v0.0.0-20260907080526-08ef8f3d26da
NOMAD_AUTOSCALER_VERSION=v0.5.0
GOLANGCI_LINT_VERSION=v2.15.0
GOTESTSUM_VERSION=v1.13.0

CACHE=${TIDEPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidepool}
BIN=$CACHE/bin
mkdir -p "$BIN"

log() { printf 'install-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go 1.26 first"

# link NAME VERSION points $BIN/NAME at the versioned binary.
link() { ln -sfn "$1-$2" "$BIN/$1"; }

# build_agent NAME MODULE VERSION KEY TAGS EDIT... downloads MODULE@VERSION,
# copies it somewhere writable, applies go mod edit flags and builds NAME
# with the given build tags into $BIN/NAME-KEY.
build_agent() {
  local name=$1 module=$2 version=$3 key=$4 tags=$5; shift 5
  local out=$BIN/$name-$key
  if [ -x "$out" ]; then
    link "$name" "$key"
    return 0
  fi
  local started=$SECONDS
  log "building $name $version from the Go module proxy (takes a few minutes; cached in $BIN)"
  local dir
  dir=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $module@$version did not produce a module directory"
  local work
  work=$(mktemp -d "$CACHE/build-$name.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this work dir.
  trap "rm -rf '$work'" RETURN
  cp -R "$dir/." "$work/"
  chmod -R u+w "$work"
  (
    cd "$work"
    if [ $# -gt 0 ]; then go mod edit "$@"; fi
    log "$name: resolving dependencies"
    GOFLAGS=-mod=mod GONOSUMDB="$module" GOTOOLCHAIN=local go mod download || die "$name: go mod download failed"
    log "$name: compiling"
    GOFLAGS=-mod=mod GONOSUMDB="$module" GOTOOLCHAIN=local CGO_ENABLED=0 \
      go build -trimpath -tags "$tags" -o "$out.tmp" . || die "$name: go build failed"
  )
  mv "$out.tmp" "$out"
  link "$name" "$key"
  log "built $name $version in $((SECONDS - started))s"
}

consul() {
  build_agent consul github.com/hashicorp/consul "$CONSUL_VERSION" "$CONSUL_VERSION" "" \
    -dropreplace=github.com/hashicorp/consul/api \
    -dropreplace=github.com/hashicorp/consul/envoyextensions \
    -dropreplace=github.com/hashicorp/consul/proto-public \
    -dropreplace=github.com/hashicorp/consul/sdk \
    -dropreplace=github.com/hashicorp/consul/troubleshoot
}

# The Nomad module ships its web UI pre-built (command/agent/bindata_assetfs.go,
# build tag "ui"); without the tag the agent serves no UI.
nomad() {
  build_agent nomad github.com/hashicorp/nomad "$NOMAD_VERSION" "$NOMAD_BUILD" ui \
    -dropreplace=github.com/hashicorp/nomad/api \
    -require=github.com/hashicorp/nomad/api@"$NOMAD_API_VERSION"
}

# nomad-autoscaler's go.mod has no local replace directives and every
# requirement resolves on the proxy, so it builds as published.
nomad_autoscaler() {
  build_agent nomad-autoscaler github.com/hashicorp/nomad-autoscaler "$NOMAD_AUTOSCALER_VERSION" "$NOMAD_AUTOSCALER_VERSION" ""
}

# chromium installs Debian's chromium for the Nomad UI browser test, on CI
# only (a developer's machine is theirs to change); elsewhere the test skips
# and says why.
chromium() {
  if type -P chromium >/dev/null || type -P chromium-browser >/dev/null; then  # PATH only: this function is named chromium too
    return 0
  fi
  if [ "${CI:-}" != true ]; then
    log "chromium is not installed; the Nomad UI browser test will skip (apt-get install chromium)"
    return 0
  fi
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing Debian's chromium (CI=true)"
  $sudo apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2 || die "apt-get install chromium failed"
}

# go_tool NAME PKG VERSION installs a Go tool into $BIN as NAME-VERSION.
go_tool() {
  local name=$1 pkg=$2 version=$3
  if [ ! -x "$BIN/$name-$version" ]; then
    log "installing $name $version"
    local gobin
    gobin=$(mktemp -d "$CACHE/gobin-$name.XXXXXX")
    GOBIN=$gobin GOTOOLCHAIN=local go install "$pkg@$version" || { rm -rf "$gobin"; die "go install $pkg@$version failed"; }
    mv "$gobin/$name" "$BIN/$name-$version"
    rm -rf "$gobin"
  fi
  link "$name" "$version"
}

golangci_lint() { go_tool golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"; }
gotestsum() { go_tool gotestsum gotest.tools/gotestsum "$GOTESTSUM_VERSION"; }

if [ "${1:-}" = --print-bin ]; then
  echo "$BIN"
  exit 0
fi
[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    consul) consul ;;
    nomad) nomad ;;
    nomad-autoscaler) nomad_autoscaler ;;
    chromium) chromium ;;
    golangci-lint) golangci_lint ;;
    gotestsum) gotestsum ;;
    agents) consul; nomad; nomad_autoscaler ;;
    all) gotestsum; golangci_lint; consul; nomad; nomad_autoscaler; chromium ;;
    *) die "unknown tool '$what' (want consul, nomad, nomad-autoscaler, chromium, agents, golangci-lint, gotestsum or all)" ;;
  esac
done
echo "$BIN"
