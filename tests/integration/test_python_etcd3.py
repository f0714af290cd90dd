"""python3-etcd3 (Debian's python3-etcd3 0.12) against a three-member cluster.

The library's high-level API, plus its generated stubs (client.kvstub) where the API does
not pass a field through (revision, count_only). Every client is closed after its test:
etcd3's watcher thread otherwise retries a failed stream forever.
"""

import queue
import re
import threading
import time
import unittest

import grpc

import etcd3
import etcd3.events
from etcd3 import etcdrpc

from cluster import ClusterTestCase, synod_only, wait_until


class EventCollector:
    """Runs an etcd3 events/responses iterator on a thread; items land in a queue."""

    def __init__(self, iterator):
        self.items = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self.thread.start()

    def _run(self, iterator):
        try:
            for item in iterator:
                self.items.put(item)
        except Exception as e:  # surfaced by get()
            self.error = e
            self.items.put(e)

    def get(self, timeout=10):
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no watch event within %ss" % timeout) from None
        if isinstance(item, Exception):
            raise AssertionError("the watch failed: %r" % item)
        return item

    def ended(self, timeout=10):
        self.thread.join(timeout)
        return not self.thread.is_alive()


# Protobuf wire encoding, by hand, for the Lock service's messages (python3-etcd3 has no
# stubs for v3lockpb): varints, length-delimited fields, and LockResponse's key.

def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def lock_request(name, lease):
    return field_bytes(1, name) + varint(2 << 3) + varint(lease)


def response_key(encoded):
    """LockResponse.key (field 2) from an encoded LockResponse."""
    i = 0
    while i < len(encoded):
        tag, i = read_varint(encoded, i)
        if tag & 7 == 0:
            _, i = read_varint(encoded, i)
            continue
        size, i = read_varint(encoded, i)
        if tag >> 3 == 2:
            return encoded[i:i + size]
        i += size
    raise AssertionError("no key in LockResponse %r" % encoded)


def read_varint(data, i):
    n = shift = 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return n, i


class PythonEtcd3Test(ClusterTestCase):
    def setUp(self):
        self.etcd = self.client(0)

    def client(self, i):
        c = self.cluster.client(i, timeout=10)
        self.addCleanup(c.close)
        return c

    def rpc_error(self, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as ctx:
            fn(*args, **kwargs)
        return ctx.exception

    # -- KV --

    def test_put_get_metadata(self):
        k = self.key("k")
        resp = self.etcd.put(k, "v1")
        rev1 = resp.header.revision
        self.assertGreater(rev1, 0)
        value, meta = self.etcd.get(k)
        self.assertEqual(value, b"v1")
        self.assertEqual(meta.key, k.encode())
        self.assertEqual((meta.version, meta.create_revision, meta.mod_revision, meta.lease_id),
                         (1, rev1, rev1, 0))
        resp = self.etcd.put(k, "v2", prev_kv=True)
        self.assertEqual(resp.prev_kv.value, b"v1")
        self.assertEqual(resp.header.revision, rev1 + 1)
        value, meta = self.etcd.get(k)
        self.assertEqual((value, meta.version, meta.create_revision, meta.mod_revision),
                         (b"v2", 2, rev1, rev1 + 1))
        self.assertEqual(self.etcd.get(self.key("missing")), (None, None))
        # Binary keys and values round-trip.
        blob = bytes(range(256))
        self.etcd.put(k + "\x00\xff", blob)
        self.assertEqual(self.etcd.get(k + "\x00\xff")[0], blob)

    def test_reads_from_every_member(self):
        k = self.key("k")
        self.etcd.put(k, "shared")
        for i in range(3):
            other = self.client(i)
            self.assertEqual(other.get(k)[0], b"shared", "linearizable read on member %d" % i)
            wait_until(lambda: other.get(k, serializable=True)[0] == b"shared", 10,
                       message="serializable read on member %d" % i)

    def test_get_prefix_range_sorting(self):
        p = self.key("")
        for name, value in (("b", "2"), ("a", "3"), ("c", "1")):
            self.etcd.put(p + name, value)
        self.etcd.put(p.rstrip("/") + "0", "outside")
        got = [(m.key.decode(), v) for v, m in self.etcd.get_prefix(p)]
        self.assertEqual(got, [(p + "a", b"3"), (p + "b", b"2"), (p + "c", b"1")])
        got = [v for v, _ in self.etcd.get_prefix(p, sort_order="descend", sort_target="value")]
        self.assertEqual(got, [b"3", b"2", b"1"])
        got = [m.key.decode() for _, m in self.etcd.get_prefix(p, sort_order="ascend",
                                                               sort_target="mod")]
        self.assertEqual(got, [p + "b", p + "a", p + "c"])
        keys_only = list(self.etcd.get_prefix(p, keys_only=True))
        self.assertEqual([v for v, _ in keys_only], [b"", b"", b""])
        got = [m.key.decode() for _, m in self.etcd.get_range(p + "a", p + "c")]
        self.assertEqual(got, [p + "a", p + "b"])

    def test_range_revision_limit_count_only(self):
        # etcd3's get() drops these fields: use its stub directly.
        k = self.key("k")
        first = self.etcd.put(k, "one").header.revision
        self.etcd.put(k, "two")
        r = self.etcd.kvstub.Range(etcdrpc.RangeRequest(key=k.encode(), revision=first),
                                   timeout=10)
        self.assertEqual([kv.value for kv in r.kvs], [b"one"])
        p = self.key("")
        for n in range(5):
            self.etcd.put(p + "n%d" % n, "x")
        end = etcd3.utils.increment_last_byte(p.encode())
        r = self.etcd.kvstub.Range(etcdrpc.RangeRequest(key=(p + "n").encode(), range_end=end,
                                                        count_only=True), timeout=10)
        self.assertEqual((r.count, len(r.kvs)), (5, 0))
        r = self.etcd.kvstub.Range(etcdrpc.RangeRequest(key=(p + "n").encode(), range_end=end,
                                                        limit=2), timeout=10)
        self.assertEqual((r.count, len(r.kvs), r.more), (5, 2, True))
        r = self.etcd.kvstub.Range(etcdrpc.RangeRequest(key=(p + "n").encode(), range_end=end,
                                                        min_mod_revision=first + 3), timeout=10)
        self.assertEqual([kv.key for kv in r.kvs], [(p + "n%d" % n).encode() for n in (1, 2, 3, 4)])

    def test_delete_and_delete_prefix(self):
        p = self.key("")
        for name in ("a", "b", "c"):
            self.etcd.put(p + name, name)
        self.assertTrue(self.etcd.delete(p + "a"))
        self.assertFalse(self.etcd.delete(p + "a"))
        resp = self.etcd.delete(p + "b", prev_kv=True, return_response=True)
        self.assertEqual(resp.deleted, 1)
        self.assertEqual([(kv.key, kv.value) for kv in resp.prev_kvs], [((p + "b").encode(), b"b")])
        self.etcd.put(p + "d", "d")
        resp = self.etcd.delete_prefix(p)
        self.assertEqual(resp.deleted, 2)
        self.assertEqual(list(self.etcd.get_prefix(p)), [])
        self.assertEqual(self.etcd.delete_prefix(p).deleted, 0)

    def test_replace_and_put_if_not_exists(self):
        k = self.key("k")
        self.assertTrue(self.etcd.put_if_not_exists(k, "v1"))
        self.assertFalse(self.etcd.put_if_not_exists(k, "other"))
        self.assertTrue(self.etcd.replace(k, "v1", "v2"))
        self.assertFalse(self.etcd.replace(k, "v1", "v3"))
        self.assertEqual(self.etcd.get(k)[0], b"v2")
        self.assertFalse(self.etcd.replace(self.key("absent"), "x", "y"))
        self.assertEqual(self.etcd.get(self.key("absent")), (None, None))

    def test_transaction_compares(self):
        k = self.key("k")
        t = self.etcd.transactions
        rev = self.etcd.put(k, "a").header.revision
        self.etcd.put(k, "b")
        ok, responses = self.etcd.transaction(
            compare=[t.value(k) == "b", t.version(k) == 2, t.create(k) == rev,
                     t.mod(k) > rev, t.version(k) < 3],
            success=[t.put(k, "c"), t.get(k)],
            failure=[t.put(k, "failed")])
        self.assertTrue(ok)
        self.assertEqual(len(responses), 2)
        self.assertEqual([v for v, _ in responses[1]], [b"c"])
        ok, responses = self.etcd.transaction(
            compare=[t.value(k) == "c", t.mod(k) < rev],
            success=[t.put(k, "no")],
            failure=[t.get(k), t.delete(k)])
        self.assertFalse(ok)
        self.assertEqual([v for v, _ in responses[0]], [b"c"])
        self.assertEqual(responses[1].response_delete_range.deleted, 1)
        self.assertEqual(self.etcd.get(k), (None, None))
        # A compare on an absent key: create revision 0.
        ok, _ = self.etcd.transaction(compare=[t.create(k) == 0],
                                      success=[t.put(k, "again")], failure=[])
        self.assertTrue(ok)
        self.assertEqual(self.etcd.get(k)[0], b"again")

    def test_get_all(self):
        p = self.key("")
        self.etcd.put(p + "x", "1")
        self.etcd.put(p + "y", "2")
        everything = {m.key.decode(): v for v, m in self.etcd.get_all()}
        self.assertEqual(everything.get(p + "x"), b"1")
        self.assertEqual(everything.get(p + "y"), b"2")
        keys = [m.key for _, m in self.etcd.get_all()]
        self.assertEqual(keys, sorted(keys))

    def test_compaction(self):
        k = self.key("k")
        old = self.etcd.put(k, "old").header.revision
        new = self.etcd.put(k, "new").header.revision
        self.etcd.compact(new)
        err = self.rpc_error(self.etcd.kvstub.Range,
                             etcdrpc.RangeRequest(key=k.encode(), revision=old), timeout=10)
        self.assertEqual(err.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertEqual(err.details(), "etcdserver: mvcc: required revision has been compacted")
        r = self.etcd.kvstub.Range(etcdrpc.RangeRequest(key=k.encode(), revision=new), timeout=10)
        self.assertEqual([kv.value for kv in r.kvs], [b"new"])
        err = self.rpc_error(self.etcd.compact, old)
        self.assertEqual(err.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertEqual(err.details(), "etcdserver: mvcc: required revision has been compacted")
        self.etcd.put(k, "newer")
        self.etcd.compact(new + 1, physical=True)
        # A watch from a compacted revision is cancelled with the compact revision
        # (etcd3 hands a RevisionCompactedError to the callback, or raises it when the
        # server says so in the creation response itself).
        got = queue.Queue()
        watcher = self.cluster.client(0, timeout=5)
        self.addCleanup(watcher.close)
        try:
            watcher.add_watch_callback(k, got.put, start_revision=old)
            err = got.get(timeout=10)
        except etcd3.exceptions.RevisionCompactedError as e:
            err = e
        self.assertIsInstance(err, etcd3.exceptions.RevisionCompactedError)
        self.assertEqual(err.compacted_revision, new + 1)

    # -- leases --

    def test_lease_grant_refresh_ttl_revoke(self):
        k = self.key("k")
        lease = self.etcd.lease(20)
        self.assertGreater(lease.id, 0)
        self.assertEqual(lease.ttl, 20)
        self.etcd.put(k, "leased", lease=lease)
        self.assertEqual(self.etcd.get(k)[1].lease_id, lease.id)
        self.assertEqual(lease.granted_ttl, 20)
        self.assertTrue(0 < lease.remaining_ttl <= 20)
        self.assertEqual(list(lease.keys), [k.encode()])
        responses = lease.refresh()
        self.assertEqual(len(responses), 1)
        self.assertEqual((responses[0].ID, responses[0].TTL), (lease.id, 20))
        # Leases are cluster-wide: another member sees it and its keys.
        info = self.client(2).get_lease_info(lease.id)
        self.assertEqual((info.ID, info.grantedTTL, list(info.keys)), (lease.id, 20, [k.encode()]))
        lease.revoke()
        self.assertEqual(self.etcd.get(k), (None, None))
        self.assertEqual(lease.remaining_ttl, -1)
        err = self.rpc_error(self.etcd.revoke_lease, lease.id)
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(err.details(), "etcdserver: requested lease not found")
        err = self.rpc_error(self.etcd.put, k, "v", lease=lease.id)
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(err.details(), "etcdserver: requested lease not found")

    def test_lease_refresh_answers_every_time(self):
        # etcd3's refresh() sends one keep-alive and closes its side of the stream at
        # once: the server must still answer it before ending the stream.
        lease = self.etcd.lease(30)
        self.addCleanup(lease.revoke)
        for i in range(3):
            member = self.client(i)
            answers = [len(list(member.refresh_lease(lease.id))) for _ in range(10)]
            self.assertEqual(answers, [1] * 10,
                             "keep-alive answers per refresh() on member %d" % i)

    def test_lease_with_chosen_id_and_expiry(self):
        k = self.key("k")
        lease_id = 0x5EED0000 + (int(time.time()) % 0xFFFF)
        lease = self.etcd.lease(3, lease_id=lease_id)
        self.assertEqual(lease.id, lease_id)
        # (etcd3 turns FAILED_PRECONDITION into a bare PreconditionFailedError: use the stub.)
        err = self.rpc_error(self.etcd.leasestub.LeaseGrant,
                             etcdrpc.LeaseGrantRequest(TTL=3, ID=lease_id), timeout=10)
        self.assertEqual(err.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(err.details(), "etcdserver: lease already exists")
        self.etcd.put(k, "v", lease=lease)
        wait_until(lambda: self.etcd.get(k) == (None, None), 3 + 5, interval=0.2,
                   message="the leased key to expire")
        self.assertEqual(lease.remaining_ttl, -1)

    # -- watches --

    def test_watch_and_cancel(self):
        k = self.key("k")
        events, cancel = self.etcd.watch(k)
        got = EventCollector(events)
        self.etcd.put(k, "v1")
        other = self.etcd.put(self.key("other"), "ignored").header.revision
        self.etcd.delete(k)
        e1, e2 = got.get(), got.get()
        self.assertIsInstance(e1, etcd3.events.PutEvent)
        self.assertEqual((e1.key, e1.value, e1.version), (k.encode(), b"v1", 1))
        self.assertIsInstance(e2, etcd3.events.DeleteEvent)
        self.assertEqual(e2.key, k.encode())
        self.assertLess(e1.mod_revision, other)
        self.assertLess(other, e2.mod_revision)
        cancel()
        self.assertTrue(got.ended(), "the events iterator did not end after cancel()")

    def test_watch_prefix_with_cancel(self):
        p = self.key("")
        responses, cancel = self.etcd.watch_prefix_response(p)
        got = EventCollector(responses)
        self.etcd.put(p + "a", "1")
        self.etcd.put(p.rstrip("/") + "-outside", "x")
        self.etcd.put(p + "b/c", "2")
        t = self.etcd.transactions
        self.etcd.transaction(compare=[], success=[t.put(p + "d", "3"), t.put(p + "e", "4")],
                              failure=[])
        seen = []
        while len(seen) < 4:
            r = got.get()
            seen.extend((type(e).__name__, e.key.decode(), e.value) for e in r.events)
        self.assertEqual(seen, [("PutEvent", p + "a", b"1"), ("PutEvent", p + "b/c", b"2"),
                                ("PutEvent", p + "d", b"3"), ("PutEvent", p + "e", b"4")])
        cancel()
        self.assertTrue(got.ended())

    def test_add_watch_callback_and_cancel_watch(self):
        k = self.key("k")
        first, second = queue.Queue(), queue.Queue()
        wid = self.etcd.add_watch_callback(k, first.put)
        self.etcd.put(k, "one")
        r = first.get(timeout=10)
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual([(e.key, e.value) for e in r.events], [(k.encode(), b"one")])
        self.assertGreaterEqual(r.header.revision, r.events[0].mod_revision)
        self.etcd.cancel_watch(wid)
        # A second watch on the same stream: once it sees the next put, the cancelled
        # one would have seen it too (one stream, in order).
        wid2 = self.etcd.add_watch_callback(k, second.put)
        self.assertNotEqual(wid2, wid)
        self.etcd.put(k, "two")
        r2 = second.get(timeout=10)
        self.assertEqual([e.value for e in r2.events], [b"two"])
        self.assertTrue(first.empty(), "a cancelled watch still delivered events")
        self.etcd.cancel_watch(wid2)

    def test_watch_start_revision_prev_kv_and_prefix_callback(self):
        p = self.key("")
        start = self.etcd.put(p + "k", "a").header.revision
        self.etcd.put(p + "k", "b")
        got = queue.Queue()
        wid = self.etcd.add_watch_prefix_callback(p, got.put, start_revision=start, prev_kv=True)
        self.addCleanup(self.etcd.cancel_watch, wid)
        events = []
        while len(events) < 2:
            r = got.get(timeout=10)
            self.assertNotIsInstance(r, Exception, r)
            events.extend(r.events)
        self.assertEqual([e.value for e in events], [b"a", b"b"])
        self.assertEqual(events[1].prev_value, b"a")
        self.assertEqual(events[0].mod_revision, start)

    def test_watch_from_another_member(self):
        k = self.key("k")
        watcher = self.client(2)
        events, cancel = watcher.watch(k)
        got = EventCollector(events)
        self.etcd.put(k, "from member 0")
        e = got.get()
        self.assertEqual(e.value, b"from member 0")
        cancel()
        self.assertTrue(got.ended())

    # -- locks --

    # etcd3 0.12's Lock.acquire() cannot wait for a held lock with Debian's tenacity (its
    # wait callback has the old two-argument signature: "TypeError: ... wait() missing 1
    # required positional argument"), a client bug whatever the server. acquire(timeout=0)
    # stops before waiting: one attempt. The tests wait as acquire() means to: by
    # watching the lock key.

    def test_lock_two_clients(self):
        name = self.key("lock").strip("/").replace("/", "-")
        c1, c2 = self.client(0), self.client(1)
        with c1.lock(name, ttl=10) as held:
            self.assertTrue(held.is_acquired())
            self.assertEqual(c2.get(held.key)[0], held.uuid)
            other = c2.lock(name, ttl=10)
            self.assertFalse(other.acquire(timeout=0))
            self.assertFalse(other.is_acquired())
            self.assertFalse(other.release(), "released a lock held by another client")
            self.assertTrue(held.is_acquired())
        self.assertFalse(held.is_acquired())
        self.assertTrue(other.acquire(timeout=0))
        self.assertTrue(other.is_acquired())
        self.assertFalse(held.release())
        self.assertTrue(other.release())
        self.assertFalse(other.release())

    def test_lock_waiter_wakes_on_release(self):
        name = self.key("lock").strip("/").replace("/", "-")
        c1, c2 = self.client(0), self.client(2)
        holder = c1.lock(name, ttl=10)
        self.assertTrue(holder.acquire(timeout=0))
        result = {}
        watching = threading.Event()

        def wait_for_lock():
            try:
                lock = c2.lock(name, ttl=10)
                deadline = time.monotonic() + 15
                while not lock.acquire(timeout=0) and time.monotonic() < deadline:
                    # The next change of the key is its release (the holder's delete).
                    events, cancel = c2.watch(lock.key)
                    watching.set()
                    try:
                        if c2.get(lock.key)[0] is not None:
                            next(events)
                    finally:
                        cancel()
                result["acquired"] = lock.is_acquired()
                result["at"] = time.monotonic()
                lock.release()
            except Exception as e:
                result["error"] = e
                watching.set()
        t = threading.Thread(target=wait_for_lock, daemon=True)
        t.start()
        self.assertTrue(watching.wait(15))
        self.assertNotIn("acquired", result)
        released = time.monotonic()
        self.assertTrue(holder.release())
        t.join(15)
        self.assertNotIn("error", result)
        self.assertTrue(result.get("acquired"), result)
        self.assertGreaterEqual(result["at"], released)

    # -- the Lock service (v3lockpb.Lock) --
    #
    # python3-etcd3 has no stubs for v3lockpb: LockRequest{name = 1, lease = 2},
    # LockResponse{header = 1, key = 2} and UnlockRequest{key = 1} are encoded here.

    def lock_rpc(self, member, method):
        channel = grpc.insecure_channel(self.cluster.members[member].endpoint)
        self.addCleanup(channel.close)
        return channel.unary_unary("/v3lockpb.Lock/" + method, request_serializer=None,
                                   response_deserializer=None)

    def test_lock_service_grants_in_turn_with_growing_tokens(self):
        name = self.key("svc-lock").encode()
        first, second = self.etcd.lease(30), self.etcd.lease(30)
        lock, unlock = self.lock_rpc(0, "Lock"), self.lock_rpc(0, "Unlock")
        waiting_lock = self.lock_rpc(2, "Lock")  # through another member
        held = response_key(lock(lock_request(name, first.id), timeout=10))
        self.assertEqual(held, name + b"/" + b"%x" % first.id)
        held_revision = self.etcd.get(held)[1].create_revision

        waiter = waiting_lock.future(lock_request(name, second.id), timeout=20)
        time.sleep(1.0)  # a negative check: the lock is held
        self.assertFalse(waiter.done(), "a held lock was granted")
        unlock(field_bytes(1, held), timeout=10)
        granted = response_key(waiter.result(timeout=15))
        self.assertEqual(granted, name + b"/" + b"%x" % second.id)
        # The fencing token: the key's create revision grows from holder to holder.
        self.assertIsNone(self.etcd.get(held)[0])
        self.assertGreater(self.etcd.get(granted)[1].create_revision, held_revision)

    def refused_waiter(self, take_away):
        """A waiter whose key `take_away(key, lease)` removes while it waits is refused."""
        name = self.key("svc-lock").encode()
        holder, waiter_lease = self.etcd.lease(30), self.etcd.lease(30)
        held = response_key(self.lock_rpc(0, "Lock")(lock_request(name, holder.id), timeout=10))
        waiter = self.lock_rpc(1, "Lock").future(lock_request(name, waiter_lease.id), timeout=20)
        waiter_key = name + b"/" + b"%x" % waiter_lease.id
        wait_until(lambda: self.etcd.get(waiter_key)[0] is not None, 10,
                   message="the waiter's key")
        take_away(waiter_key, waiter_lease)  # it still waits for the holder
        time.sleep(0.5)
        self.assertFalse(waiter.done())
        self.lock_rpc(0, "Unlock")(field_bytes(1, held), timeout=10)
        with self.assertRaises(grpc.RpcError) as refused:
            waiter.result(timeout=15)
        self.assertEqual((refused.exception.code(), refused.exception.details()),
                         (grpc.StatusCode.UNKNOWN, "mutex: session is expired"))

    @synod_only("etcd 3.4 grants the lock without a look at the key (Jepsen, etcd 3.4.3)")
    def test_lock_service_refuses_a_waiter_whose_lease_is_revoked_before_its_turn(self):
        self.refused_waiter(lambda key, lease: lease.revoke())

    @synod_only("etcd 3.4 grants the lock without a look at the key (Jepsen, etcd 3.4.3)")
    def test_lock_service_refuses_a_waiter_whose_key_is_deleted_before_its_turn(self):
        # The lease lives on: only the linearizable read of the keys can see this.
        self.refused_waiter(lambda key, lease: self.etcd.delete(key))

    # -- cluster and maintenance --

    def test_members(self):
        members = list(self.etcd.members)
        self.assertEqual(sorted((m.name, list(m.peer_urls), list(m.client_urls)) for m in members),
                         sorted((m.name, [m.peer_url], [m.client_url])
                                for m in self.cluster.members))
        self.assertEqual(len({m.id for m in members}), 3)

    def test_status(self):
        status = self.etcd.status()
        self.assertRegex(status.version, r"^\d+\.\d+\.\d+")
        self.assertIsNotNone(status.leader, "the leader is not among the members")
        self.assertIn(status.leader.id, {m.id for m in self.etcd.members})
        self.assertGreater(status.raft_index, 0)
        self.assertGreaterEqual(status.raft_term, 1)
        self.assertGreater(status.db_size, 0)
        # Every member names the same leader.
        leaders = {self.client(i).status().leader.id for i in range(3)}
        self.assertEqual(leaders, {status.leader.id})

    def test_alarms_hash_defragment_snapshot(self):
        self.assertEqual(list(self.etcd.list_alarms()), [])
        self.assertIsInstance(self.etcd.hash(), int)
        self.etcd.defragment()
        self.etcd.put(self.key("k"), "v")

        class Sink:
            size = 0

            def write(self, blob):
                Sink.size += len(blob)
        self.etcd.snapshot(Sink())
        self.assertGreater(Sink.size, 0)


if __name__ == "__main__":
    unittest.main()
