#!/usr/bin/python3
"""Runs the same Watch scenarios against synod and a real etcd, and diffs the answers.

Every response is printed as one line (watch id, created/canceled, compact revision,
cancel reason, fragment, header revision, events), revisions relative to the revision the
run started at, so the two servers need not start at the same revision. Cluster and member
ids are left out.

  scripts/watch-vs-etcd.py SYNOD_ENDPOINT [ETCD_ENDPOINT]

Without ETCD_ENDPOINT a throwaway etcd (/usr/bin/etcd, Debian's 3.4) is started in a
temporary directory. Prints IDENTICAL, or the diff (exit 1). `--print ENDPOINT` prints one
server's transcript. The scenarios write keys under wv<random>/ and COMPACT the server's history:
point it at a throwaway cluster. Use the leader's endpoint for synod: a write through a
follower may be answered before that follower applied it (etcd answers after), which
shifts the first scenario's `created` revision.

Needs protoc (the build's) and python3-grpcio; the messages are generated from proto/.
"""
import atexit
import difflib
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = tempfile.mkdtemp(prefix="watch-vs-etcd-")
atexit.register(shutil.rmtree, GEN, True)
subprocess.check_call(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"), "--python_out=" + GEN,
                       "etcd/mvccpb/kv.proto", "etcd/authpb/auth.proto", "etcd/etcdserverpb/rpc.proto"])
sys.path.insert(0, GEN)
import grpc  # noqa: E402
from etcd.etcdserverpb import rpc_pb2 as pb  # noqa: E402

SETTLE_S = 0.5  # how long to collect responses after each step


class Run:
    def __init__(self, endpoint):
        self.ch = grpc.insecure_channel(endpoint)
        self.lines = []
        self.base = self.rev()
        # Fresh keys on every run; printed without this prefix.
        self.prefix = "wv%d/" % random.randrange(10**9)

    def k(self, name):
        return self.prefix + name

    def key(self, raw):
        k = raw.decode()
        return k[len(self.prefix):] if k.startswith(self.prefix) else k

    def unary(self, name, req, resp_cls):
        call = self.ch.unary_unary("/etcdserverpb.KV/" + name, request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=resp_cls.FromString)
        return call(req, timeout=10)

    def put(self, k, v):
        self.unary("Put", pb.PutRequest(key=k.encode(), value=v.encode()), pb.PutResponse)

    def delete(self, k):
        self.unary("DeleteRange", pb.DeleteRangeRequest(key=k.encode()), pb.DeleteRangeResponse)

    def txn_puts(self, kvs):
        t = pb.TxnRequest()
        for k, v in kvs:
            t.success.add().request_put.CopyFrom(pb.PutRequest(key=k.encode(), value=v.encode()))
        self.unary("Txn", t, pb.TxnResponse)

    def compact(self, rev):
        self.unary("Compact", pb.CompactionRequest(revision=rev, physical=True), pb.CompactionResponse)

    def rev(self):
        return self.unary("Range", pb.RangeRequest(key=b"\0"), pb.RangeResponse).header.revision

    def rel(self, rev):
        return "0" if rev == 0 else "%+d" % (rev - self.base)

    def fmt(self, r):
        s = "wid=%d" % r.watch_id
        if r.created:
            s += " created"
        if r.canceled:
            s += " canceled"
        if r.compact_revision:
            s += " compact=" + self.rel(r.compact_revision)
        if r.cancel_reason:
            s += " reason=%r" % r.cancel_reason
        if r.fragment:
            s += " fragment"
        s += " hdr=" + self.rel(r.header.revision)
        for e in r.events:
            s += " [%s %s=%s @%s c%s v%d" % ("PUT" if e.type == 0 else "DEL", self.key(e.kv.key), e.kv.value.decode(),
                                            self.rel(e.kv.mod_revision), self.rel(e.kv.create_revision),
                                            e.kv.version)
            if e.HasField("prev_kv"):
                s += " prev=%s@%s" % (e.prev_kv.value.decode(), self.rel(e.prev_kv.mod_revision))
            s += "]"
        return s

    def stream(self):
        return Stream(self)


class Stream:
    def __init__(self, run):
        self.run = run
        self.reqs = queue.Queue()
        self.resps = queue.Queue()

        def gen():
            while True:
                r = self.reqs.get()
                if r is None:
                    return
                yield r
        call = run.ch.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb.WatchResponse.FromString)
        self.it = call(gen())

        def pump():
            try:
                for r in self.it:
                    self.resps.put(r)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    self.resps.put(e)
        threading.Thread(target=pump, daemon=True).start()

    def create(self, key, end="", start=0, prev_kv=False, wid=0, filters=(), progress=False):
        c = pb.WatchCreateRequest(key=key.encode(), range_end=end.encode(), start_revision=start,
                                  prev_kv=prev_kv, watch_id=wid, filters=list(filters), progress_notify=progress)
        self.reqs.put(pb.WatchRequest(create_request=c))

    def cancel(self, wid):
        self.reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=wid)))

    def progress(self):
        self.reqs.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def drain(self, label, any_order=False):
        # any_order: the step's responses concern different watchers, which neither server
        # orders (etcd walks a Go map): compare them sorted.
        lines = []
        deadline = time.time() + SETTLE_S
        while True:
            try:
                r = self.resps.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            line = ("error %s %s" % (r.code(), r.details())) if isinstance(r, grpc.RpcError) else self.run.fmt(r)
            lines.append("%s: %s" % (label, line))
        self.run.lines.extend(sorted(lines) if any_order else lines)

    def close(self):
        self.reqs.put(None)
        self.it.cancel()


def scenarios(run):
    base = run.base
    run.put(run.k("a"), "0")
    s = run.stream()
    s.create(run.k("a"))
    s.drain("create")
    run.put(run.k("a"), "1")
    run.put(run.k("b"), "1")
    run.delete(run.k("a"))
    s.drain("events")
    s.close()

    s = run.stream()
    s.create(run.k("x"), wid=5)
    s.drain("own id")
    s.create(run.k("x"), wid=5)
    s.drain("duplicate id")
    s.create(run.k("x"))
    s.create(run.k("x"))
    s.drain("server ids")
    s.create(run.k("b"), end=run.k("a"))
    s.drain("empty range")
    s.create("", end="")
    s.drain("empty key")
    s.cancel(5)
    s.drain("cancel")
    s.cancel(99)
    s.cancel(5)
    s.drain("cancel unknown")
    s.create(run.k("x"), wid=-3)
    s.create(run.k("x"))
    s.drain("negative id, then a server id")
    s.close()

    s = run.stream()
    s.progress()
    s.drain("progress, no watcher")
    s.create(run.k("p"), progress=True)
    s.drain("create")
    s.progress()
    s.drain("progress")
    run.put(run.k("p"), "1")
    s.progress()
    s.drain("put, progress")
    s.close()

    s = run.stream()
    s.create(run.k("a"), start=base + 1, prev_kv=True)
    s.drain("history with prev_kv")
    s.create(run.k("a"), end=run.k("b"), start=base + 2)
    s.drain("history of a range")
    s.close()

    s = run.stream()
    s.create(run.k("f"), end=run.k("g"), filters=[pb.WatchCreateRequest.NOPUT])
    s.create(run.k("f"), end=run.k("g"), filters=[pb.WatchCreateRequest.NODELETE], prev_kv=True)
    s.drain("filters")
    run.put(run.k("f1"), "1")
    run.put(run.k("f1"), "2")
    run.delete(run.k("f1"))
    s.drain("filtered events")
    s.close()

    s = run.stream()
    s.create(run.k("t"), end=run.k("u"))
    s.drain("create")
    run.txn_puts([(run.k("t1"), "1"), (run.k("t2"), "1"), (run.k("zz"), "1"), (run.k("t3"), "1")])
    s.drain("one txn")
    s.close()

    s = run.stream()
    s.create(run.k("k"), end="\0")
    s.drain("from key")
    run.put(run.k("j"), "1")
    run.put(run.k("k"), "1")
    run.put(run.k("zzz"), "1")
    s.drain("from key events")
    s.close()

    s = run.stream()
    s.create(run.k("fu"), start=run.rev() + 2)
    s.drain("future start")
    run.put(run.k("fu"), "1")
    run.put(run.k("fu"), "2")
    s.drain("future start events")
    s.close()

    s = run.stream()
    s.create(run.k("m"))
    s.create(run.k("m"), end=run.k("n"))
    s.drain("two watchers")
    run.put(run.k("m"), "1")
    s.drain("one put, two watchers", any_order=True)
    s.close()

    r = run.rev()
    run.compact(r - 2)
    time.sleep(0.3)
    s = run.stream()
    s.create(run.k("a"), start=base + 1)
    s.drain("start compacted")
    s.create(run.k("a"), start=r - 2)
    s.drain("start at the compaction")
    s.create(run.k("a"), start=r - 3)
    s.drain("start just below it")
    s.close()

    s = run.stream()
    s.create(run.k("h"))
    s.drain("create")
    s.reqs.put(None)  # half-close: etcd keeps the watchers
    time.sleep(0.2)
    run.put(run.k("h"), "1")
    s.drain("after half-close")
    s.it.cancel()
    return run.lines


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd():
    data = tempfile.mkdtemp(prefix="watch-vs-etcd-data-")
    atexit.register(shutil.rmtree, data, True)
    client, peer = free_port(), free_port()
    proc = subprocess.Popen(
        ["etcd", "--name", "ref", "--data-dir", data,
         "--listen-client-urls", "http://127.0.0.1:%d" % client,
         "--advertise-client-urls", "http://127.0.0.1:%d" % client,
         "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
         "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
         "--initial-cluster", "ref=http://127.0.0.1:%d" % peer],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = "127.0.0.1:%d" % client
    for _ in range(100):
        try:
            Run(endpoint)
            return proc, endpoint
        except grpc.RpcError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("etcd did not start")


def main(argv):
    if len(argv) == 3 and argv[1] == "--print":
        print("\n".join(scenarios(Run(argv[2]))))
        return 0
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    proc = None
    if len(argv) == 3:
        etcd = argv[2]
    else:
        proc, etcd = start_etcd()
    try:
        want = scenarios(Run(etcd))
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    got = scenarios(Run(argv[1]))
    diff = list(difflib.unified_diff(want, got, "etcd", "synod", lineterm=""))
    print("\n".join(diff) if diff else "IDENTICAL (%d responses)" % len(got))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
