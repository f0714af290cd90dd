"""State snapshots with real processes: taken often, sent to a member far behind, and the
starting point of every restart.

Members run with --snapshot-count=50, so a few hundred writes make each member take
several snapshots and release its log before them. A member's own snapshot is a flush of
its store and a file without the state; the state is written into a file only when a
member needs it. Then:

SnapshotTest.test_member_far_behind_catches_up_then_all_restart_from_their_snapshots
  - a follower is killed; 400 puts and a delete later the leader's log no longer holds
    what it missed, and its snapshot files hold no state; when the follower comes back it
    can only catch up from a snapshot, whose state the leader writes then (sent in chunks,
    installed, then the log after it);
  - every member must then hold exactly the written keys, values and revisions (read
    serializably, i.e. each member's own state, through etcdctl);
  - every member is SIGKILLed and restarted: each starts from its own newest snapshot
    file and the WAL after it, and must hold the same again, and take writes.
  (The members keep 10 entries before each snapshot: the follower is far past them.)

CatchUpFromTheLogTest.test_member_a_little_behind_catches_up_from_the_log (Raft)
  - with 100 entries kept before each snapshot, a follower away for 60 writes across the
    leader's snapshot catches up from the log: no member writes a snapshot with state.
"""

import glob
import os
import unittest

from cluster import ClusterTestCase, is_etcd, synod_only, wait_until

KEYS = 400


def _catchup_flags(entries):
    """Entries kept before a snapshot (etcd 3.5's flag: etcd 3.4 keeps 5000, fixed)."""
    return [] if is_etcd() else ["--experimental-snapshot-catchup-entries=%d" % entries]


class _SnapshotTestCase(ClusterTestCase):
    CLUSTER_SIZE = 3

    def member_state(self, i, prefix="snap/"):
        """Member i's own keys under `prefix` and its revision (a serializable read)."""
        out = self.cluster.etcdctl_json("get", prefix, "--prefix", "--consistency=s",
                                        endpoint=self.cluster.members[i].endpoint)
        kvs = {}
        for kv in out.get("kvs", []):
            kvs[_b64(kv["key"])] = _b64(kv["value"])
        return kvs, int(out["header"]["revision"])

    def assert_every_member_holds(self, want, revision):
        for i in range(self.CLUSTER_SIZE):
            def caught_up():
                kvs, rev = self.member_state(i)
                return (kvs, rev) if rev >= revision else None
            kvs, rev = wait_until(caught_up, 60, interval=0.3,
                                  message="member %d at revision %d" % (i, revision))
            self.assertEqual(rev, revision, "member %d" % i)
            self.assertEqual(kvs, want, "member %d holds other keys than were written" % i)

    def snapshot_sizes(self, i):
        return [os.path.getsize(p) for p in glob.glob(os.path.join(
            self.cluster.members[i].data_dir, "member", "snap", "*.snap"))]


class SnapshotTest(_SnapshotTestCase):
    # Ten entries kept before each snapshot: the member 400 writes behind is far past them.
    CLUSTER_FLAGS = ["--snapshot-count=50"] + _catchup_flags(10)

    def expected(self):
        want = {"snap/%04d" % i: "value %d" % i for i in range(KEYS)}
        del want["snap/0007"]
        return want

    def test_member_far_behind_catches_up_then_all_restart_from_their_snapshots(self):
        c = self.cluster
        leader = c.leader()
        behind = next(i for i in range(self.CLUSTER_SIZE) if i != leader)
        c.kill(behind)

        client = c.client(leader)
        try:
            for i in range(KEYS):
                client.put("snap/%04d" % i, "value %d" % i)
            client.delete("snap/0007")
        finally:
            client.close()
        revision = int(c.etcdctl_json("get", "snap/0000",
                                      endpoint=c.members[leader].endpoint)["header"]["revision"])
        self.assertEqual(revision, 1 + KEYS + 1, "a fresh store: one revision per write")
        want = self.expected()
        if not is_etcd():
            # The members' own snapshots are their stores' flushes: the files hold the
            # index, term and membership, not the state (that is made when a member needs it).
            snaps = sorted(glob.glob(os.path.join(c.members[leader].data_dir, "member",
                                                  "snap", "*.snap")))
            self.assertTrue(snaps, "no snapshot file on the leader")
            self.assertLess(os.path.getsize(snaps[-1]), 1024,
                            "the leader's newest snapshot file holds the state")

        c.restart(behind)
        self.assert_every_member_holds(want, revision)
        if not is_etcd():
            # It caught up from a snapshot: its newest snapshot file is past what it had.
            snaps = sorted(glob.glob(os.path.join(c.members[behind].data_dir, "member",
                                                  "snap", "*.snap")))
            self.assertTrue(snaps, "no snapshot file on the member that was behind")
            self.assertGreater(int(os.path.basename(snaps[-1]).split(".")[0], 16), KEYS // 2)
            # The leader wrote the state it sent into a file then (400 keys: well over 1 KiB).
            self.assertGreater(max(self.snapshot_sizes(leader)), 8 * 1024,
                               "no snapshot file with state at the leader")

        for i in range(self.CLUSTER_SIZE):
            c.kill(i)
        for i in range(self.CLUSTER_SIZE):
            c.restart(i, wait=False)
        c.wait_healthy()
        self.assert_every_member_holds(want, revision)

        client = c.client(c.leader())
        try:
            client.put("snap/after", "restart")
        finally:
            client.close()
        want["snap/after"] = "restart"
        self.assert_every_member_holds(want, revision + 1)


@synod_only("--experimental-snapshot-catchup-entries is etcd 3.5's; 3.4 keeps 5000")
class CatchUpFromTheLogTest(_SnapshotTestCase):
    """A follower a little behind when the leader compacted catches up from the entries the
    leader keeps before its snapshot, without the state being dumped or sent."""
    CLUSTER_FLAGS = ["--snapshot-count=50"] + _catchup_flags(100)

    def test_member_a_little_behind_catches_up_from_the_log(self):
        c = self.cluster
        leader = c.leader()
        behind = next(i for i in range(self.CLUSTER_SIZE) if i != leader)
        client = c.client(leader)
        try:
            # Six snapshots with everyone up: the leader's log then starts about 100
            # entries before its newest snapshot, near index 200.
            for i in range(300):
                client.put("near/%04d" % i, "value %d" % i)
            c.kill(behind)
            # One snapshot more while a member is away: it is about 60 entries behind,
            # past the leader's snapshot but within the entries kept before it.
            for i in range(300, 360):
                client.put("near/%04d" % i, "value %d" % i)
        finally:
            client.close()
        revision = int(c.etcdctl_json("get", "near/0000",
                                      endpoint=c.members[leader].endpoint)["header"]["revision"])
        c.restart(behind)
        for i in range(self.CLUSTER_SIZE):
            def caught_up():
                kvs, rev = self.member_state(i, "near/")
                return (kvs, rev) if rev >= revision else None
            kvs, _ = wait_until(caught_up, 60, interval=0.3,
                             message="member %d at revision %d" % (i, revision))
            self.assertEqual(len(kvs), 360, "member %d" % i)
        # No member needed the state: every snapshot file is a store flush's small file.
        for i in range(self.CLUSTER_SIZE):
            self.assertLess(max(self.snapshot_sizes(i) or [0]), 1024,
                            "member %d holds a snapshot file with state" % i)


def _b64(s):
    import base64
    return base64.b64decode(s).decode()


if __name__ == "__main__":
    unittest.main()
