#!/usr/bin/env bash
# Builds etcd's own load tool (tools/benchmark of a pinned etcd release, from
# the Go module proxy) into bin/tools/etcd-benchmark, for `make bench`: the
# issue's etcd figures were taken with it, so the load table's put rows are
# also run with it against both servers, beside our cairn-bench. The tool
# has no --version; a stamp file beside it records the release it was built
# from. Like build-etcd.sh, a throwaway module requires etcd's root module
# (its go.mod has replace directives, so `go install pkg@version` refuses it).
set -euo pipefail
version=${ETCD_VERSION:-v3.7.1}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools/etcd-benchmark"
stamp="$out.version"
if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
mkdir -p "$root/bin/tools"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init etcd-benchmark-build >/dev/null 2>&1
go get "go.etcd.io/etcd/v3@$version" >/dev/null 2>&1
go build -o "$out" go.etcd.io/etcd/v3/tools/benchmark
echo "$version" > "$stamp"
echo "etcd benchmark tool $version"
