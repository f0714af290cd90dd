"""etcdctl (ETCDCTL_API=3, Debian's etcd-client 3.4) against a three-member cluster.

Every expectation is etcd's own output (checked against /usr/bin/etcd with
SYNOD_BIN=/usr/bin/etcd). Tests of one class share a cluster, so each works under its
own key prefix (self.key(...)).
"""

import base64
import json
import os
import re
import signal
import tempfile
import time
import unittest

from cluster import ClusterTestCase, stop_shared_clusters, wait_until

HEX_ID = r"[0-9a-f]{1,16}"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def table_rows(table):
    """Rows of an etcdctl -w table output, as lists of stripped cells (header first)."""
    rows = []
    for line in table.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def tearDownModule():
    stop_shared_clusters()


class EtcdctlTestCase(ClusterTestCase):
    SHARED_CLUSTER = True  # every class but MembershipTest

    def revision(self):
        return self.ctl_json("get", "/no-such-key-for-revision")["header"]["revision"]

    def lease_grant(self, ttl):
        out = self.ctl_ok("lease", "grant", str(ttl))
        m = re.fullmatch(r"lease (%s) granted with TTL\((\d+)s\)\n" % HEX_ID, out)
        self.assertIsNotNone(m, out)
        return m.group(1), int(m.group(2))

    def watch(self, key, *flags, probe_key=None):
        """Starts `etcdctl watch key flags...` and returns it once it receives events.

        A watch prints nothing when it is created, so the test puts `probe_key` (default:
        the watched key) until a probe event shows up; events of puts made after that
        are certain to be delivered. Returns (watch, output so far)."""
        w = self.cluster.etcdctl_background("watch", key, *flags)
        self.addCleanup(w.stop)
        probe_key = probe_key or key
        deadline = time.monotonic() + 20
        i = 0
        while True:
            value = "probe-%d" % i
            self.ctl_ok("put", probe_key, value)
            try:
                w.wait_for(lambda out: ("\n%s\n" % value) in out, timeout=1.0,
                           message="probe event")
                break
            except AssertionError:
                if not w.running() or time.monotonic() > deadline:
                    raise
            i += 1
        return w, w.stdout, value


class KvTest(EtcdctlTestCase):
    def test_put_get_json_revisions(self):
        k = self.key("k")
        self.assertEqual(self.ctl_ok("put", k, "v1"), "OK\n")
        first = self.ctl_json("get", k)
        self.assertEqual(first["count"], 1)
        kv = first["kvs"][0]
        self.assertEqual(kv["key"], b64(k))
        self.assertEqual(kv["value"], b64("v1"))
        self.assertEqual(kv["version"], 1)
        self.assertEqual(kv["create_revision"], first["header"]["revision"])
        self.assertEqual(kv["mod_revision"], first["header"]["revision"])
        self.assertNotIn("lease", kv)
        for field in ("cluster_id", "member_id", "raft_term"):
            self.assertIn(field, first["header"])

        self.assertEqual(self.ctl_ok("put", k, "v2"), "OK\n")
        second = self.ctl_json("get", k)
        kv2 = second["kvs"][0]
        self.assertEqual(kv2["value"], b64("v2"))
        self.assertEqual(kv2["version"], 2)
        self.assertEqual(kv2["create_revision"], kv["create_revision"])
        self.assertEqual(kv2["mod_revision"], kv["mod_revision"] + 1)
        self.assertEqual(second["header"]["revision"], kv2["mod_revision"])
        self.assertEqual(self.ctl_ok("get", k), "%s\nv2\n" % k)
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "v2\n")

    def test_get_missing_key(self):
        self.assertEqual(self.ctl_ok("get", self.key("missing")), "")
        body = self.ctl_json("get", self.key("missing"))
        self.assertNotIn("kvs", body)
        self.assertNotIn("count", body)  # zero: omitted from etcdctl's JSON

    def test_put_prev_kv(self):
        k = self.key("k")
        self.assertEqual(self.ctl_ok("put", k, "old"), "OK\n")
        self.assertEqual(self.ctl_ok("put", k, "new", "--prev-kv"), "OK\n%s\nold\n" % k)

    def test_get_prefix_range_from_key(self):
        p = self.key("")
        for name, value in (("a", "1"), ("b", "2"), ("c", "3")):
            self.ctl_ok("put", p + name, value)
        self.ctl_ok("put", p.rstrip("/") + "0", "outside")  # "/test/0" > "/test/" prefix end
        self.assertEqual(self.ctl_ok("get", p, "--prefix"),
                         "%sa\n1\n%sb\n2\n%sc\n3\n" % (p, p, p))
        # [a, c): c excluded
        self.assertEqual(self.ctl_ok("get", p + "a", p + "c"), "%sa\n1\n%sb\n2\n" % (p, p))
        out = self.ctl_ok("get", p + "b", "--from-key", "--keys-only")
        keys = [line for line in out.splitlines() if line]
        self.assertEqual(keys[:2], [p + "b", p + "c"])
        self.assertTrue(all(k >= p + "b" for k in keys), keys)

    def test_get_limit_sort_keys_only_count(self):
        p = self.key("")
        # values chosen so that KEY, VALUE and MODIFY orders all differ
        for name, value in (("b", "x"), ("c", "y"), ("a", "z")):
            self.ctl_ok("put", p + name, value)
        limited = self.ctl_json("get", p, "--prefix", "--limit", "2")
        self.assertEqual(limited["count"], 3)
        self.assertTrue(limited["more"])
        self.assertEqual([base64.b64decode(kv["key"]).decode() for kv in limited["kvs"]],
                         [p + "a", p + "b"])
        self.assertEqual(self.ctl_ok("get", p, "--prefix", "--keys-only"),
                         "%sa\n\n%sb\n\n%sc\n\n" % (p, p, p))
        self.assertEqual(self.ctl_ok("get", p, "--prefix", "--print-value-only"), "z\nx\ny\n")
        self.assertEqual(
            self.ctl_ok("get", p, "--prefix", "--sort-by=MODIFY", "--order=DESCEND",
                        "--print-value-only"), "z\ny\nx\n")
        self.assertEqual(
            self.ctl_ok("get", p, "--prefix", "--sort-by=VALUE", "--order=ASCEND",
                        "--keys-only"), "%sb\n\n%sc\n\n%sa\n\n" % (p, p, p))
        self.assertEqual(
            self.ctl_ok("get", p, "--prefix", "--sort-by=KEY", "--order=DESCEND",
                        "--limit=1", "--print-value-only"), "y\n")
        # etcdctl 3.4 has no --count-only; the JSON count is the range's full size.
        full = self.ctl_json("get", p, "--prefix", "--keys-only")
        self.assertEqual(full["count"], 3)
        self.assertNotIn("more", full)
        self.assertTrue(all("value" not in kv for kv in full["kvs"]))

    def test_get_at_revision(self):
        k = self.key("k")
        self.ctl_ok("put", k, "one")
        rev1 = self.revision()
        self.ctl_ok("put", k, "two")
        self.ctl_ok("put", k, "three")
        self.assertEqual(self.ctl_ok("get", k, "--rev=%d" % rev1, "--print-value-only"), "one\n")
        self.assertEqual(self.ctl_ok("get", k, "--rev=%d" % (rev1 + 1),
                                     "--print-value-only"), "two\n")
        self.assertEqual(self.ctl_ok("get", k, "--rev=%d" % (rev1 - 1)), "")
        at = self.ctl_json("get", k, "--rev=%d" % rev1)
        self.assertEqual(at["kvs"][0]["mod_revision"], rev1)
        self.assertGreaterEqual(at["header"]["revision"], rev1 + 2)
        self.assertCtlFails(self.ctl("get", k, "--rev=%d" % (rev1 + 1000000)),
                            "etcdserver: mvcc: required revision is a future revision")

    def test_del_prefix_prev_kv(self):
        p = self.key("")
        for name in ("a", "b", "c"):
            self.ctl_ok("put", p + name, "v" + name)
        self.assertEqual(self.ctl_ok("del", p + "a", "--prev-kv"), "1\n%sa\nva\n" % p)
        self.assertEqual(self.ctl_ok("del", p + "a"), "0\n")
        self.assertEqual(self.ctl_ok("del", p, "--prefix"), "2\n")
        self.assertEqual(self.ctl_ok("get", p, "--prefix"), "")
        self.assertEqual(self.ctl_ok("del", p, "--prefix"), "0\n")

    def test_empty_key_rejected(self):
        self.assertCtlFails(self.ctl("put", "", "v"), "etcdserver: key is not provided")
        self.assertCtlFails(self.ctl("get", ""), "etcdserver: key is not provided")

    def test_write_to_every_member_forwarded_to_leader(self):
        # Two of the three endpoints are followers: a write sent to one must be forwarded
        # (or proposed) and then be visible from every member.
        for i in range(len(self.cluster.members)):
            k = self.key("from-%d" % i)
            self.assertEqual(self.ctl_ok("put", k, "v%d" % i, endpoint=i), "OK\n")
            for j in range(len(self.cluster.members)):
                self.assertEqual(self.ctl_ok("get", k, "--print-value-only", endpoint=j),
                                 "v%d\n" % i, "written through member %d, read on %d" % (i, j))

    def test_serializable_and_linearizable_get(self):
        k = self.key("k")
        for n in range(3):
            self.ctl_ok("put", k, "v%d" % n, endpoint=n % 3)
            want = "v%d\n" % n
            # A linearizable read on any member sees the write just acknowledged.
            for j in range(3):
                self.assertEqual(self.ctl_ok("get", k, "--print-value-only",
                                             "--consistency=l", endpoint=j), want)
        # A serializable read is served locally; every member catches up.
        for j in range(3):
            wait_until(lambda: self.ctl_ok("get", k, "--print-value-only", "--consistency=s",
                                           endpoint=j) == "v2\n", 10,
                       message="serializable read on member %d" % j)
        body = self.ctl_json("get", k, "--consistency=s", endpoint=1)
        self.assertEqual(body["kvs"][0]["version"], 3)


class TxnTest(EtcdctlTestCase):
    def txn(self, text, *flags):
        return self.ctl_ok("txn", *flags, input=text)

    def test_txn_value_compare_branches(self):
        k = self.key("k")
        self.ctl_ok("put", k, "v1")
        out = self.txn('value("%s") = "v1"\n\nput %s v2\nget %s\n\nput %s failed\n\n'
                       % (k, k, k, k))
        self.assertEqual(out, "SUCCESS\n\nOK\n\n%s\nv2\n" % k)
        out = self.txn('value("%s") = "v1"\n\nput %s v3\n\nput %s failed\nget %s\n\n'
                       % (k, k, k, k))
        self.assertEqual(out, "FAILURE\n\nOK\n\n%s\nfailed\n" % k)
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "failed\n")

    def test_txn_version_create_mod_compares(self):
        k = self.key("k")
        self.ctl_ok("put", k, "a")
        created = self.ctl_json("get", k)["kvs"][0]["create_revision"]
        self.ctl_ok("put", k, "b")
        modified = self.ctl_json("get", k)["kvs"][0]["mod_revision"]
        cases = [
            ('version("%s") = "2"' % k, True),
            ('version("%s") > "2"' % k, False),
            ('version("%s") < "3"' % k, True),
            ('version("%s") != "2"' % k, False),
            ('create("%s") = "%d"' % (k, created), True),
            ('create("%s") > "%d"' % (k, created), False),
            ('mod("%s") = "%d"' % (k, modified), True),
            ('mod("%s") < "%d"' % (k, modified), False),
            ('value("%s") > "a"' % k, True),
            ('value("%s") < "b"' % k, False),
        ]
        for compare, expected in cases:
            out = self.txn("%s\n\nget %s\n\n\n" % (compare, k))
            self.assertEqual(out.splitlines()[0], "SUCCESS" if expected else "FAILURE", compare)
        # All compares must hold.
        out = self.txn('version("%s") = "2"\nmod("%s") = "%d"\nvalue("%s") = "x"\n\n\n\n'
                       % (k, k, modified, k))
        self.assertEqual(out, "FAILURE\n")

    def test_txn_create_if_absent_json(self):
        k = self.key("k")
        body = json.loads(self.txn('create("%s") = "0"\n\nput %s first\n\n\n' % (k, k),
                                   "-w", "json"))
        self.assertTrue(body["succeeded"])
        self.assertEqual(len(body["responses"]), 1)
        self.assertIn("ResponsePut", body["responses"][0]["Response"])
        body = json.loads(self.txn('create("%s") = "0"\n\nput %s second\n\n\n' % (k, k),
                                   "-w", "json"))
        self.assertNotIn("succeeded", body)  # false: omitted
        self.assertNotIn("responses", body)
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "first\n")

    def test_txn_delete_and_multiple_ops_share_one_revision(self):
        p = self.key("")
        self.ctl_ok("put", p + "a", "1")
        before = self.revision()
        out = self.txn('value("%sa") = "1"\n\ndel %sa\nput %sb 2\nput %sc 3\n\n\n' % (p, p, p, p))
        self.assertEqual(out, "SUCCESS\n\n1\n\nOK\n\nOK\n")
        after = self.ctl_json("get", p, "--prefix")
        self.assertEqual(after["header"]["revision"], before + 1)
        self.assertEqual({kv["mod_revision"] for kv in after["kvs"]}, {before + 1})
        self.assertEqual(after["count"], 2)


class CompactionTest(EtcdctlTestCase):
    def test_compaction_then_old_revision_is_gone(self):
        k = self.key("k")
        self.ctl_ok("put", k, "one")
        old = self.revision()
        self.ctl_ok("put", k, "two")
        self.ctl_ok("put", k, "three")
        target = self.revision() - 1
        self.assertEqual(self.ctl_ok("compaction", str(target)),
                         "compacted revision %d\n" % target)
        self.assertCtlFails(self.ctl("get", k, "--rev=%d" % old),
                            "etcdserver: mvcc: required revision has been compacted")
        # The compacted revision itself is still readable, as are later ones.
        self.assertEqual(self.ctl_ok("get", k, "--rev=%d" % target, "--print-value-only"),
                         "two\n")
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "three\n")
        # Every member compacted (linearizable reads on each).
        for j in range(3):
            self.assertCtlFails(self.ctl("get", k, "--rev=%d" % old, endpoint=j),
                                "required revision has been compacted")
        # Compacting again at or below the compacted revision, or in the future, fails.
        self.assertCtlFails(self.ctl("compaction", str(old)),
                            "etcdserver: mvcc: required revision has been compacted")
        self.assertCtlFails(self.ctl("compaction", str(target + 1000000)),
                            "etcdserver: mvcc: required revision is a future revision")
        # A watch from a compacted revision is cancelled by the server.
        w = self.cluster.etcdctl_background("watch", k, "--rev=%d" % old)
        self.addCleanup(w.stop)
        code = w.wait(15)
        self.assertNotEqual(code, 0)
        self.assertIn("watch was canceled (etcdserver: mvcc: required revision has been "
                      "compacted)", w.stderr)

    def test_compaction_physical(self):
        self.ctl_ok("put", self.key("k"), "v")
        rev = self.revision()
        self.assertEqual(self.ctl_ok("compaction", "--physical", str(rev)),
                         "compacted revision %d\n" % rev)


class WatchTest(EtcdctlTestCase):
    def test_watch_key(self):
        k = self.key("k")
        w, seen, _ = self.watch(k)
        self.ctl_ok("put", k, "real")
        self.ctl_ok("del", k)
        self.ctl_ok("put", self.key("other"), "ignored")
        self.ctl_ok("put", k, "again")
        out = w.wait_for(lambda o: o.endswith("again\n"), 10)
        self.assertEqual(out[len(seen):], "PUT\n%s\nreal\nDELETE\n%s\n\nPUT\n%s\nagain\n"
                         % (k, k, k))

    def test_watch_prefix(self):
        p = self.key("")
        w, seen, _ = self.watch(p, "--prefix", probe_key=p + "probe")
        self.ctl_ok("put", p + "x", "1")
        self.ctl_ok("put", self.key("").rstrip("/") + "-outside", "no")
        self.ctl_ok("put", p + "y/z", "2")
        self.ctl_ok("del", p, "--prefix")
        out = w.wait_for(lambda o: o.count("DELETE\n") >= 3, 10)
        new = out[len(seen):]
        self.assertTrue(new.startswith("PUT\n%sx\n1\nPUT\n%sy/z\n2\n" % (p, p)), new)
        deletes = new[len("PUT\n%sx\n1\nPUT\n%sy/z\n2\n" % (p, p)):]
        # One delete-range: three DELETE events (probe, x, y/z) in key order.
        self.assertEqual(deletes, "DELETE\n%sprobe\n\nDELETE\n%sx\n\nDELETE\n%sy/z\n\n"
                         % (p, p, p))
        self.assertNotIn("outside", out)

    def test_watch_from_revision_replays_history(self):
        k = self.key("k")
        self.ctl_ok("put", k, "a")
        start = self.revision()
        self.ctl_ok("put", k, "b")
        self.ctl_ok("del", k)
        w = self.cluster.etcdctl_background("watch", k, "--rev=%d" % start)
        self.addCleanup(w.stop)
        w.wait_for(lambda o: o.count("\n") >= 9, 10)
        self.ctl_ok("put", k, "c")
        out = w.wait_for(lambda o: o.endswith("\nc\n"), 10)
        self.assertEqual(out, "PUT\n%s\na\nPUT\n%s\nb\nDELETE\n%s\n\nPUT\n%s\nc\n"
                         % (k, k, k, k))

    def test_watch_prev_kv(self):
        k = self.key("k")
        w, seen, probe = self.watch(k, "--prev-kv")
        self.ctl_ok("put", k, "real")
        self.ctl_ok("del", k)
        out = w.wait_for(lambda o: o[len(seen):].count("\n") >= 10, 10)
        self.assertEqual(out[len(seen):],
                         "PUT\n%s\n%s\n%s\nreal\nDELETE\n%s\nreal\n%s\n\n"
                         % (k, probe, k, k, k))

    def test_watch_future_revision_waits(self):
        k = self.key("k")
        start = self.revision() + 3
        w = self.cluster.etcdctl_background("watch", k, "--rev=%d" % start)
        self.addCleanup(w.stop)
        expected = ""
        for v in ("r1", "r2", "r3", "r4"):  # about revisions start-2 .. start+1
            rev = self.ctl_json("put", k, v)["header"]["revision"]
            if rev >= start:
                expected += "PUT\n%s\n%s\n" % (k, v)
        self.assertIn("r4", expected)
        out = w.wait_for(lambda o: o.endswith("r4\n"), 10)
        self.assertEqual(out, expected)


class LeaseTest(EtcdctlTestCase):
    def test_lease_grant_attach_timetolive_keepalive_revoke(self):
        k = self.key("k")
        lid, ttl = self.lease_grant(60)
        self.assertEqual(ttl, 60)
        self.assertIn(lid + "\n", self.ctl_ok("lease", "list"))
        self.assertEqual(self.ctl_ok("put", k, "v", "--lease=" + lid), "OK\n")
        self.assertEqual(int(self.ctl_json("get", k)["kvs"][0]["lease"]), int(lid, 16))
        out = self.ctl_ok("lease", "timetolive", lid, "--keys")
        m = re.fullmatch(r"lease %s granted with TTL\(60s\), remaining\((\d+)s\), "
                         r"attached keys\(\[%s\]\)\n" % (lid, re.escape(k)), out)
        self.assertIsNotNone(m, out)
        self.assertTrue(50 <= int(m.group(1)) <= 60, out)
        self.assertEqual(self.ctl_ok("lease", "keep-alive", "--once", lid),
                         "lease %s keepalived with TTL(60)\n" % lid)
        self.assertEqual(self.ctl_ok("lease", "revoke", lid), "lease %s revoked\n" % lid)
        self.assertEqual(self.ctl_ok("get", k), "")
        self.assertEqual(self.ctl_ok("lease", "timetolive", lid),
                         "lease %s already expired\n" % lid)
        self.assertNotIn(lid, self.ctl_ok("lease", "list"))
        self.assertCtlFails(self.ctl("lease", "revoke", lid),
                            "etcdserver: requested lease not found")
        self.assertCtlFails(self.ctl("put", k, "v", "--lease=" + lid),
                            "etcdserver: requested lease not found")

    def test_lease_expiry_deletes_keys(self):
        k = self.key("k")
        granted = time.monotonic()
        lid, ttl = self.lease_grant(3)
        self.assertEqual(ttl, 3)
        self.ctl_ok("put", k, "v", "--lease=" + lid)
        self.ctl_ok("put", k + "2", "v", "--lease=" + lid)
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "v\n")
        wait_until(lambda: self.ctl_ok("get", k, "--prefix") == "", ttl + 5,
                   interval=0.2, message="the lease's keys to expire")
        elapsed = time.monotonic() - granted
        self.assertGreaterEqual(elapsed, ttl - 1.0, "keys deleted before the TTL passed")
        self.assertEqual(self.ctl_ok("lease", "timetolive", lid),
                         "lease %s already expired\n" % lid)

    def test_lease_keep_alive_stream_keeps_keys(self):
        k = self.key("k")
        lid, _ = self.lease_grant(3)
        self.ctl_ok("put", k, "v", "--lease=" + lid)
        granted = time.monotonic()
        ka = self.cluster.etcdctl_background("lease", "keep-alive", lid)
        self.addCleanup(ka.stop)
        # Keep-alives go out every TTL/3: wait well past the TTL.
        ka.wait_lines("lease %s keepalived with TTL(3)\n" % lid, timeout=15, count=5)
        self.assertGreater(time.monotonic() - granted, 3.5)
        self.assertEqual(self.ctl_ok("get", k, "--print-value-only"), "v\n")
        ka.stop()
        wait_until(lambda: self.ctl_ok("get", k) == "", 3 + 5, message="expiry after keep-alive")


class LockElectTest(EtcdctlTestCase):
    def test_lock_two_contenders_mutually_exclusive(self):
        with tempfile.TemporaryDirectory() as tmp:
            trace = os.path.join(tmp, "trace")
            open(trace, "w").close()

            def contender(name):
                script = ("echo start %s >> %s; sleep 1; echo end %s >> %s; "
                          "echo key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV") % (name, trace, name, trace)
                c = self.cluster.etcdctl_background("lock", self.key("lock"), "--", "sh", "-c",
                                                    script)
                self.addCleanup(c.stop)
                return c

            a, b = contender("A"), contender("B")
            self.assertEqual(a.wait(20), 0, a.stderr)
            self.assertEqual(b.wait(20), 0, b.stderr)
            lines = open(trace).read().split()
        pairs = [lines[i:i + 2] for i in range(0, len(lines), 2)]
        self.assertIn(pairs, ([["start", "A"], ["end", "A"], ["start", "B"], ["end", "B"]],
                              [["start", "B"], ["end", "B"], ["start", "A"], ["end", "A"]]),
                      "critical sections overlap: %s" % lines)
        keys = []
        for c in (a, b):
            m = re.fullmatch(r"key=(%s/%s) rev=(\d+)\n" % (re.escape(self.key("lock")), HEX_ID),
                             c.stdout)
            self.assertIsNotNone(m, c.stdout)
            keys.append(m.group(1))
        self.assertNotEqual(keys[0], keys[1])

    def test_lock_waiter_runs_after_holder_releases(self):
        name = self.key("lock")
        holder = self.cluster.etcdctl_background("lock", name)
        self.addCleanup(holder.stop)
        out = holder.wait_for(lambda o: "\n" in o, 15, message="the lock key")
        self.assertRegex(out.splitlines()[0], r"^%s/%s$" % (re.escape(name), HEX_ID))
        waiter = self.cluster.etcdctl_background("lock", name, "--", "echo", "acquired")
        self.addCleanup(waiter.stop)
        time.sleep(1.0)  # a negative check: the waiter must not get the lock meanwhile
        self.assertEqual(waiter.stdout, "", "the waiter got a held lock")
        self.assertTrue(waiter.running(), "the waiter exited (code %s): %r"
                        % (waiter.proc.returncode, waiter.stderr))
        holder.stop(signal.SIGINT)  # etcdctl unlocks and closes its session
        self.assertEqual(waiter.wait(15), 0, waiter.stderr)
        self.assertEqual(waiter.stdout, "acquired\n")

    def test_elect_campaign_observe_and_failover(self):
        name = self.key("election")
        e1 = self.cluster.etcdctl_background("elect", name, "p1")
        self.addCleanup(e1.stop)
        out = e1.wait_for(lambda o: o.endswith("\np1\n"), 15, message="p1 elected")
        self.assertRegex(out, r"^%s/%s\np1\n$" % (re.escape(name), HEX_ID))
        leader_key = out.splitlines()[0]
        e2 = self.cluster.etcdctl_background("elect", name, "p2")
        self.addCleanup(e2.stop)
        observer = self.cluster.etcdctl_background("elect", "-l", name)
        self.addCleanup(observer.stop)
        self.assertEqual(observer.wait_for(lambda o: o.endswith("p1\n"), 15),
                         "%s\np1\n" % leader_key)
        self.assertEqual(e2.stdout, "", "a second candidate won a held election")
        e1.stop(signal.SIGINT)  # resigns
        out2 = e2.wait_for(lambda o: o.endswith("\np2\n"), 15, message="p2 elected")
        self.assertRegex(out2, r"^%s/%s\np2\n$" % (re.escape(name), HEX_ID))
        obs = observer.wait_for(lambda o: o.endswith("p2\n"), 15)
        self.assertEqual(obs, "%s\np1\n%s" % (leader_key, out2))

    def test_elect_without_proposal(self):
        r = self.ctl("elect", self.key("e"))
        self.assertCtlFails(r, "no proposal argument but -l not set")


class MaintenanceTest(EtcdctlTestCase):
    def test_endpoint_status_table(self):
        rows = table_rows(self.ctl_ok("endpoint", "status", "-w", "table"))
        self.assertEqual(rows[0], ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER",
                                   "IS LEARNER", "RAFT TERM", "RAFT INDEX",
                                   "RAFT APPLIED INDEX", "ERRORS"])
        body = rows[1:]
        self.assertEqual(sorted(r[0] for r in body), sorted(self.cluster.endpoints))
        self.assertEqual([r[4] for r in body].count("true"), 1, rows)
        self.assertTrue(all(r[5] == "false" for r in body), rows)
        self.assertTrue(all(re.fullmatch(HEX_ID, r[1]) for r in body), rows)
        self.assertEqual(len({r[1] for r in body}), 3)
        self.assertTrue(all(re.fullmatch(r"\d+\.\d+\.\d+", r[2]) for r in body), rows)
        self.assertEqual(len({r[6] for r in body}), 1, "members disagree on the term")
        self.assertTrue(all(int(r[6]) >= 1 and int(r[7]) >= 1 for r in body), rows)
        statuses = self.cluster.status()
        leaders = {s["Status"]["leader"] for s in statuses}
        self.assertEqual(len(leaders), 1)
        ids = {s["Status"]["header"]["member_id"] for s in statuses}
        self.assertIn(leaders.pop(), ids)

    def test_endpoint_health(self):
        r = self.ctl("endpoint", "health")
        self.assertEqual(r.returncode, 0, r.stderr)
        for ep in self.cluster.endpoints:
            self.assertRegex(r.stderr + r.stdout, r"%s is healthy: successfully committed "
                             r"proposal: took = " % re.escape(ep))
        body = self.ctl_json("endpoint", "health")
        self.assertEqual(sorted(h["endpoint"] for h in body), sorted(self.cluster.endpoints))
        self.assertTrue(all(h["health"] for h in body), body)

    def test_endpoint_hashkv_agrees(self):
        self.ctl_ok("put", self.key("k"), "v")

        def agreed():
            body = self.ctl_json("endpoint", "hashkv")
            hashes = {(h["HashKV"]["hash"], h["HashKV"]["header"]["revision"]) for h in body}
            return len(body) == 3 and len(hashes) == 1 and body
        body = wait_until(agreed, 10, interval=0.3, message="equal hashkv on every member")
        out = self.ctl_ok("endpoint", "hashkv")
        for line in out.splitlines():
            self.assertRegex(line, r"^127\.0\.0\.1:\d+, \d+$")
        self.assertEqual(sorted(h["Endpoint"] for h in body), sorted(self.cluster.endpoints))

    def test_snapshot_save(self):
        self.ctl_ok("put", self.key("k"), "in the snapshot")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "snap.db")
            out = self.ctl_ok("snapshot", "save", path, endpoint=0, command_timeout=20)
            self.assertEqual(out, "Snapshot saved at %s\n" % path)
            self.assertTrue(os.path.isfile(path))
            self.assertGreater(os.path.getsize(path), 0)
            self.assertFalse(os.path.exists(path + ".part"))

    def test_alarm_list_empty(self):
        r = self.ctl("alarm", "list")
        self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)

    def test_defrag_every_member(self):
        out = self.ctl_ok("defrag", command_timeout=20)
        self.assertEqual(sorted(out.splitlines()),
                         sorted("Finished defragmenting etcd member[%s]" % ep
                                for ep in self.cluster.endpoints))
        self.ctl_ok("put", self.key("k"), "after defrag")
        self.assertEqual(self.ctl_ok("get", self.key("k"), "--print-value-only"),
                         "after defrag\n")


class MembershipTest(EtcdctlTestCase):
    """Changes the membership and the leader: its own cluster."""

    SHARED_CLUSTER = False

    def member_list(self):
        return self.ctl_json("member", "list")["members"]

    def test_member_list_table(self):
        rows = table_rows(self.ctl_ok("member", "list", "-w", "table"))
        self.assertEqual(rows[0], ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS",
                                   "IS LEARNER"])
        got = sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows[1:])
        want = sorted(("started", m.name, m.peer_url, m.client_url, "false")
                      for m in self.cluster.members if m.running())
        self.assertEqual(got, want)
        ids = {int(r[0], 16) for r in rows[1:]}
        self.assertEqual(ids, set(self.cluster.member_ids().values()))
        body = self.ctl_json("member", "list")
        self.assertEqual(sorted(m["name"] for m in body["members"]),
                         sorted(m.name for m in self.cluster.members if m.running()))

    def test_member_learner_add_promote_remove(self):
        c = self.cluster
        new = c.add_member_slot("learner1")

        added = {}

        def cleanup():  # after a failure: leave the class's cluster as it was
            if new.running():
                c.kill(new.index)
            if "id" in added and not new.removed:
                self.ctl("member", "remove", added["id"], endpoint=[0, 1, 2])
                new.removed = True
        self.addCleanup(cleanup)

        def add():
            r = self.ctl("member", "add", new.name, "--learner", "--peer-urls=" + new.peer_url)
            if r.returncode != 0 and "etcdserver: unhealthy cluster" in r.stderr:
                return None  # etcd: peers not connected for 5 s yet
            return r
        r = wait_until(add, 20, interval=0.5, message="member add")
        self.assertEqual(r.returncode, 0, r.stderr)
        # etcdctl prints ids with "%16x": a smaller id is padded with spaces.
        m = re.match(r"Member +(%s) added to cluster +(%s)\n\n" % (HEX_ID, HEX_ID), r.stdout)
        self.assertIsNotNone(m, r.stdout)
        new_id = added["id"] = m.group(1)
        self.assertIn('ETCD_NAME="%s"\n' % new.name, r.stdout)
        self.assertIn('ETCD_INITIAL_ADVERTISE_PEER_URLS="%s"\n' % new.peer_url, r.stdout)
        self.assertIn('ETCD_INITIAL_CLUSTER_STATE="existing"\n', r.stdout)
        cluster_line = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.stdout).group(1)
        self.assertEqual(sorted(cluster_line.split(",")),
                         sorted("%s=%s" % (x.name, x.peer_url) for x in c.members))

        listed = {("%x" % x["ID"]): x for x in self.member_list()}
        self.assertIn(new_id, listed)
        self.assertTrue(listed[new_id].get("isLearner"))
        self.assertEqual(listed[new_id].get("name", ""), "")  # unstarted: no name yet
        rows = table_rows(self.ctl_ok("member", "list", "-w", "table"))
        row = next(r for r in rows if r[0] == new_id)
        self.assertEqual((row[1], row[5]), ("unstarted", "true"))

        # Not started, so not caught up: promotion is refused.
        self.assertCtlFails(self.ctl("member", "promote", new_id),
                            "etcdserver: can only promote a learner member which is in sync "
                            "with leader")

        new.start()

        def started():
            rows = table_rows(self.ctl_ok("member", "list", "-w", "table", endpoint=[0, 1, 2]))
            return any(r[0] == new_id and r[1] == "started" and r[2] == new.name for r in rows)
        wait_until(started, 20, interval=0.3, message="the learner to start")
        # A learner serves no linearizable reads.
        self.assertCtlFails(self.ctl("get", self.key("k"), endpoint=new.index),
                            "etcdserver: rpc not supported for learner")

        def promoted():
            r = self.ctl("member", "promote", new_id, endpoint=[0, 1, 2])
            if r.returncode == 0:
                return r
            self.assertIn("can only promote a learner member which is in sync with leader",
                          r.stderr)
            return None
        r = wait_until(promoted, 30, interval=0.5, message="the learner to catch up")
        self.assertEqual(r.stdout, "Member %16s promoted in cluster %16s\n"
                         % (new_id, m.group(2)))
        listed = {("%x" % x["ID"]): x for x in self.member_list()}
        self.assertFalse(listed[new_id].get("isLearner", False))
        self.assertEqual(listed[new_id]["name"], new.name)
        c.wait_healthy([0, 1, 2, new.index], timeout=30)
        self.ctl_ok("put", self.key("k"), "four members")
        wait_until(lambda: self.ctl_ok("get", self.key("k"), "--print-value-only",
                                       "--consistency=s", endpoint=new.index)
                   == "four members\n", 10, message="the new member to replicate")

        # Remove it again: back to three.
        out = self.ctl_ok("member", "remove", new_id, endpoint=[0, 1, 2])
        self.assertEqual(out, "Member %16s removed from cluster %16s\n" % (new_id, m.group(2)))
        new.removed = True
        self.assertNotIn(new_id, {("%x" % x["ID"]) for x in
                                  self.ctl_json("member", "list", endpoint=[0, 1, 2])["members"]})
        self.assertCtlFails(self.ctl("member", "remove", new_id, endpoint=[0, 1, 2]),
                            "etcdserver: member not found")
        # The removed member stops by itself (etcd and synod both shut it down).
        try:
            new.proc.wait(timeout=15)
        except Exception:
            pass
        c.kill(new.index) if new.running() else new.wait_exit()
        c.wait_healthy([0, 1, 2])

    def test_move_leader(self):
        c = self.cluster
        ids = c.member_ids()
        old = c.leader()
        target = next(i for i in sorted(ids) if i != old and c.members[i].running())
        out = self.ctl_ok("move-leader", "%x" % ids[target], endpoint=[0, 1, 2])
        self.assertEqual(out, "Leadership transferred from %x to %x\n" % (ids[old], ids[target]))
        self.assertEqual(c.leader(), target)
        self.assertCtlFails(self.ctl("move-leader", "3039", endpoint=[0, 1, 2]),
                            "etcdserver: bad leader transferee")
        self.ctl_ok("put", self.key("k"), "after move")

    def test_serializable_read_without_quorum(self):
        c = self.cluster
        k = self.key("k")
        self.ctl_ok("put", k, "before")
        for j in range(3):  # every member has applied it
            wait_until(lambda: self.ctl_ok("get", k, "--print-value-only", "--consistency=s",
                                           endpoint=j) == "before\n", 10)
        c.kill(1)
        c.kill(2)
        try:
            self.assertEqual(self.ctl_ok("get", k, "--print-value-only", "--consistency=s",
                                         endpoint=0), "before\n")
            r = self.ctl("get", k, "--consistency=l", endpoint=0, command_timeout=3)
            self.assertNotEqual(r.returncode, 0, "a linearizable read without a quorum: %r"
                                % r.stdout)
            self.assertEqual(r.stdout, "")
            r = self.ctl("put", k, "maybe", endpoint=0, command_timeout=3)
            self.assertNotEqual(r.returncode, 0, "a write without a quorum succeeded")
        finally:
            c.restart(1, wait=False)
            c.restart(2, wait=False)
            c.wait_healthy([0, 1, 2])
        # The unacknowledged write may or may not have been kept (it may have reached the
        # leader's log before the quorum was lost).
        self.assertIn(self.ctl_ok("get", k, "--print-value-only"), ("before\n", "maybe\n"))
        self.assertEqual(self.ctl_ok("put", k, "after"), "OK\n")


if __name__ == "__main__":
    unittest.main()
