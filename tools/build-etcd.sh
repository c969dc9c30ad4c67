#!/usr/bin/env bash
# Builds the etcd server (a pinned release, from the Go module proxy) into
# bin/tools, for `make bench`: the load table measures etcd beside cairn on
# the same box with the same load tool. Like build-etcdctl.sh, a throwaway
# module that requires etcd's server module builds it as a dependency (its
# go.mod has replace directives, so `go install pkg@version` refuses it).
set -euo pipefail
version=${ETCD_VERSION:-v3.7.1}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools/etcd"
# Capture output instead of piping into grep -q/head: with pipefail, a
# reader that exits early kills etcd with SIGPIPE and fails the script.
if [ -x "$out" ]; then
  have=$("$out" --version 2>/dev/null || true)
  # Compare the whole first line: a substring match would take 3.7.10 for 3.7.1.
  if [ "${have%%$'\n'*}" = "etcd Version: ${version#v}" ]; then
    exit 0
  fi
fi
mkdir -p "$root/bin/tools"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init etcd-build >/dev/null 2>&1
go get "go.etcd.io/etcd/server/v3@$version" >/dev/null 2>&1
go build -o "$out" go.etcd.io/etcd/server/v3
got=$("$out" --version)
echo "${got%%$'\n'*}"
