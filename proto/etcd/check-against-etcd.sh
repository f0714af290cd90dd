#!/usr/bin/env bash
# Compares our etcd protos with etcd's own, as protoc sees them: every package, message,
# field (name, number, label, type, oneof), enum value, service and method must be the
# same. Ignored: file names and import paths, comments, order, json_name and options
# (gogoproto, google.api.http), none of which reach the wire.
#
# etcd's files come from Debian's golang-etcd-server-dev (the source of the etcd-server
# we test against), fetched with `apt-get download` into $ETCD_SRC if not there yet.
# Usage: proto/etcd/check-against-etcd.sh   (prints IDENTICAL, or the differences)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)   # our import root: proto/
etcd_src=${ETCD_SRC:-/tmp/etcdsrc}
etcd=$etcd_src/usr/share/gocode/src/go.etcd.io/etcd
if [[ ! -d $etcd ]]; then
  (cd /tmp && apt-get download golang-etcd-server-dev >/dev/null && dpkg -x golang-etcd-server-dev_*.deb "$etcd_src")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# etcd's files with their non-wire annotations removed, at our import paths.
python3 - "$etcd" "$work/ref" <<'PY'
import os, re, sys
etcd, out = sys.argv[1], sys.argv[2]
paths = {
    'mvcc/mvccpb/kv.proto': 'etcd/mvccpb/kv.proto',
    'auth/authpb/auth.proto': 'etcd/authpb/auth.proto',
    'etcdserver/etcdserverpb/rpc.proto': 'etcd/etcdserverpb/rpc.proto',
    'etcdserver/api/v3lock/v3lockpb/v3lock.proto': 'etcd/v3lockpb/v3lock.proto',
    'etcdserver/api/v3election/v3electionpb/v3election.proto': 'etcd/v3electionpb/v3election.proto',
}
for src, dst in paths.items():
    s = open(os.path.join(etcd, src)).read()
    s = re.sub(r'option \(google\.api\.http\) = \{(?:[^{}]|\{[^{}]*\})*\};', '', s)
    s = re.sub(r'import "(gogoproto|google)[^"]*";', '', s)
    s = re.sub(r'option \(gogoproto[^;]*;', '', s)
    s = re.sub(r'\s*\[\(gogoproto[^\]]*\]', '', s)
    for a, b in paths.items():
        s = s.replace('"etcd/' + a + '"', '"' + b + '"')
    p = os.path.join(out, dst)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, 'w').write(s)
PY

# Each tree as a text FileDescriptorSet, then in a canonical, order-free form.
describe() {
  protoc --proto_path="$1" --include_imports --descriptor_set_out=/dev/stdout \
      "$1/etcd/v3electionpb/v3election.proto" "$1/etcd/v3lockpb/v3lock.proto" |
    protoc --decode=google.protobuf.FileDescriptorSet -I/usr/include google/protobuf/descriptor.proto
}
canon() {
  python3 -c '
import sys
def parse(lines, i):
    node = []
    while i < len(lines):
        l = lines[i].strip(); i += 1
        if not l: continue
        if l == "}": return node, i
        if l.endswith("{"):
            sub, i = parse(lines, i); node.append((l[:-1].strip(), sub))
        else:
            k, v = l.split(":", 1); node.append((k.strip(), v.strip()))
    return node, i
def canon(n):
    if isinstance(n, str): return n
    return "{" + ",".join(sorted(k + "=" + canon(v) for k, v in n if k not in ("options", "json_name"))) + "}"
tree, _ = parse(sys.stdin.read().split("\n"), 0)
for _, f in tree:
    print(canon([(a, b) for a, b in f if a not in ("name", "dependency")]))
' | sort
}
describe "$work/ref" | canon >"$work/etcd.txt"
describe "$here" | canon >"$work/ours.txt"
if cmp -s "$work/etcd.txt" "$work/ours.txt"; then
  echo IDENTICAL
else
  diff <(tr ',' '\n' <"$work/etcd.txt") <(tr ',' '\n' <"$work/ours.txt") || true
  exit 1
fi
