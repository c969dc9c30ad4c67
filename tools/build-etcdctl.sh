#!/usr/bin/env bash
# Builds etcdctl (a pinned release, from the Go module proxy) into bin/tools,
# for the compatibility tests: etcd's own CLI is one of cairn's judges.
# etcdctl's go.mod has replace directives, so `go install pkg@version`
# refuses it; a throwaway module that requires it builds it as a dependency.
set -euo pipefail
version=${ETCDCTL_VERSION:-v3.7.3}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools/etcdctl"
# Capture output instead of piping into grep -q/head: with pipefail, a
# reader that exits early kills etcdctl with SIGPIPE and fails the script.
if [ -x "$out" ]; then
  have=$("$out" version 2>/dev/null || true)
  case "$have" in
  *"etcdctl version: ${version#v}"*) exit 0 ;;
  esac
fi
mkdir -p "$root/bin/tools"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init etcdctl-build >/dev/null 2>&1
go get "go.etcd.io/etcd/etcdctl/v3@$version" >/dev/null 2>&1
go build -o "$out" go.etcd.io/etcd/etcdctl/v3
got=$("$out" version)
echo "${got%%$'\n'*}"
