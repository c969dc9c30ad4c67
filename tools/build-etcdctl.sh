#!/usr/bin/env bash
# Builds etcdctl (a pinned release, from the Go module proxy) into bin/tools,
# for the compatibility tests: etcd's own CLI is one of cairn's judges.
# etcdctl's go.mod has replace directives, so `go install pkg@version`
# refuses it; a throwaway module that requires it builds it as a dependency.
set -euo pipefail
version=${ETCDCTL_VERSION:-v3.7.3}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools/etcdctl"
if [ -x "$out" ] && "$out" version 2>/dev/null | grep -q "etcdctl version: ${version#v}"; then
  exit 0
fi
mkdir -p "$root/bin/tools"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init etcdctl-build >/dev/null 2>&1
go get "go.etcd.io/etcd/etcdctl/v3@$version" >/dev/null 2>&1
go build -o "$out" go.etcd.io/etcd/etcdctl/v3
"$out" version | head -1
