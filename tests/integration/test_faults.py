"""Bad input, crashes and restarts, start-up refusals.

BadInputTest      oversized requests, empty keys, txn limits, garbage on the client and
                  peer ports: refused, and the cluster stays healthy.
DurabilityTest    SIGKILL of the leader under a stream of acknowledged puts; SIGTERM and
                  restart of every member.
StartupTest       a data dir from another cluster, unsupported or unknown flags, bad
                  values, a port in use, --version and --help.
LeaderLossTest    a member cut off from the others ends the watches, lease keep-alives
                  and election observations of clients that require a leader (etcdctl's
                  do), as etcd does, and refuses new ones.
"""

import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import grpc

from etcd3 import etcdrpc

from cluster import (Cluster, ClusterTestCase, free_ports, is_etcd, require_tools,
                     server_binary, synod_only, wait_until)

MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes
GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd (and synod) accept gRPC messages up to max + this
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def read_until_closed(sock, timeout):
    """Reads until the peer closes the connection; returns (closed, bytes received)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    received = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


class BadInputTest(ClusterTestCase):
    def setUp(self):
        self.etcd = self.cluster.client(0, timeout=20)
        self.addCleanup(self.etcd.close)

    def assertClusterServes(self):
        """Every member healthy, and a write and a read through each still work."""
        r = self.cluster.health()
        self.assertEqual(r.returncode, 0, r.stderr)
        for i in range(3):
            k = self.key("alive-%d" % i)
            self.ctl_ok("put", k, "yes", endpoint=i)
            self.assertEqual(self.ctl_ok("get", k, "--print-value-only", endpoint=(i + 1) % 3),
                             "yes\n")

    def test_request_too_large_etcdctl(self):
        # 1.75 MiB: over --max-request-bytes, under gRPC's own limit; read from stdin
        # (an argument that long is more than exec allows).
        value = "x" * (MAX_REQUEST_BYTES + 256 * 1024)
        r = self.ctl("put", self.key("big"), input=value, command_timeout=20)
        self.assertCtlFails(r, "etcdserver: request is too large")
        self.assertEqual(self.ctl_ok("get", self.key("big")), "")
        self.assertClusterServes()

    def test_request_too_large_python(self):
        k = self.key("big")
        err = None
        try:
            self.etcd.put(k, b"x" * (MAX_REQUEST_BYTES + 256 * 1024))
        except grpc.RpcError as e:
            err = e
        self.assertIsNotNone(err, "a 1.75 MiB put was accepted")
        self.assertEqual((err.code(), err.details()),
                         (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"))
        # Just under the limit is fine.
        self.etcd.put(k, b"y" * (MAX_REQUEST_BYTES - 4096))
        self.assertEqual(len(self.etcd.get(k)[0]), MAX_REQUEST_BYTES - 4096)
        self.etcd.delete(k)
        self.assertClusterServes()

    def test_message_beyond_grpc_limit(self):
        # 2 MiB of value plus the key and framing: beyond max + 512 KiB, so gRPC itself
        # refuses the message before the server sees it.
        for size in (2 * 1024 * 1024, 3 * 1024 * 1024):
            err = None
            try:
                self.etcd.put(self.key("huge"), b"z" * size)
            except grpc.RpcError as e:
                err = e
            self.assertIsNotNone(err, "a %d-byte put was accepted" % size)
            self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, err.details())
            # grpc-go: "grpc: received message larger than max (...)"; C++ gRPC core:
            # "Received message larger than max (...)".
            self.assertIn("received message larger than max", err.details().lower())
        self.assertEqual(self.etcd.get(self.key("huge")), (None, None))
        self.assertClusterServes()

    def test_empty_key_rejected(self):
        for call in (lambda: self.etcd.put("", "v"),
                     lambda: self.etcd.get(""),
                     lambda: self.etcd.delete("")):
            with self.assertRaises(grpc.RpcError) as ctx:
                call()
            self.assertEqual((ctx.exception.code(), ctx.exception.details()),
                             (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"))
        self.assertCtlFails(self.ctl("put", "", "v"), "etcdserver: key is not provided")
        t = self.etcd.transactions
        with self.assertRaises(grpc.RpcError) as ctx:
            self.etcd.transaction(compare=[], success=[t.put("", "v")], failure=[])
        self.assertEqual(ctx.exception.details(), "etcdserver: key is not provided")

    def test_txn_limits(self):
        t = self.etcd.transactions
        p = self.key("")
        with self.assertRaises(grpc.RpcError) as ctx:  # --max-txn-ops defaults to 128
            self.etcd.transaction(compare=[], success=[t.put(p + "k%d" % i, "v")
                                                       for i in range(129)], failure=[])
        self.assertEqual((ctx.exception.code(), ctx.exception.details()),
                         (grpc.StatusCode.INVALID_ARGUMENT,
                          "etcdserver: too many operations in txn request"))
        ok, _ = self.etcd.transaction(compare=[], success=[t.put(p + "k%d" % i, "v")
                                                           for i in range(128)], failure=[])
        self.assertTrue(ok)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.etcd.transaction(compare=[], success=[t.put(p + "dup", "1"),
                                                       t.put(p + "dup", "2")], failure=[])
        self.assertEqual((ctx.exception.code(), ctx.exception.details()),
                         (grpc.StatusCode.INVALID_ARGUMENT,
                          "etcdserver: duplicate key given in txn request"))

    def garbage_test(self, port_of, payloads, hold_open=False):
        """Sends each payload on its own connection to port_of(member); the server must
        close that connection (and only that one)."""
        watcher_client = self.cluster.client(1, timeout=10)  # an open connection throughout
        self.addCleanup(watcher_client.close)
        watcher_client.put(self.key("before"), "1")
        for i, payload in enumerate(payloads):
            member = self.cluster.members[i % 3]
            with socket.create_connection(("127.0.0.1", port_of(member)), timeout=5) as s:
                try:
                    s.sendall(payload)
                    if hold_open:
                        # A half-sent preface, held: other clients are served meanwhile.
                        self.assertClusterServes()
                    s.shutdown(socket.SHUT_WR)
                except OSError:  # reset, or not connected: the server closed it already
                    closed = True
                else:
                    closed, _ = read_until_closed(s, 15)
                self.assertTrue(closed, "member %s kept the connection open after %r..."
                                % (member.name, payload[:24]))
        self.assertEqual(watcher_client.get(self.key("before"))[0], b"1")
        watcher_client.put(self.key("after"), "2")
        self.assertTrue(all(m.running() for m in self.cluster.members))
        self.assertClusterServes()

    def random_payloads(self):
        rng = random.Random(20240229)
        return ([bytes(rng.getrandbits(8) for _ in range(n)) for n in (1, 24, 4096, 65536)]
                + [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 1000])

    def test_garbage_on_client_port(self):
        self.garbage_test(lambda m: m.client_port, self.random_payloads())

    def test_truncated_preface_on_client_port(self):
        self.garbage_test(lambda m: m.client_port,
                          [HTTP2_PREFACE[:10], HTTP2_PREFACE[:-1],
                           HTTP2_PREFACE + b"\x00\x00\x06\x04"], hold_open=True)

    def test_garbage_on_peer_port(self):
        self.garbage_test(lambda m: m.peer_port, self.random_payloads())

    def test_truncated_preface_on_peer_port(self):
        self.garbage_test(lambda m: m.peer_port,
                          [HTTP2_PREFACE[:10], HTTP2_PREFACE[:-1],
                           HTTP2_PREFACE + b"\x00\x00\x06\x04"], hold_open=True)


class DurabilityTest(ClusterTestCase):
    def test_sigkill_leader_during_acknowledged_puts(self):
        c = self.cluster
        leader = c.leader()
        clients = [c.client(i, timeout=2) for i in range(3)]
        for cl in clients:
            self.addCleanup(cl.close)
        acked = {}
        failures = []
        stop = threading.Event()
        prefix = self.key("")

        def writer():
            n, target = 0, leader  # start on the leader: its in-flight puts die with it
            while not stop.is_set():
                key, value = "%s%06d" % (prefix, n), "v%d" % n
                try:
                    clients[target].put(key, value)
                except Exception as e:  # unacknowledged: may or may not be applied
                    failures.append("%s on member %d: %r" % (key, target, e))
                    target = (target + 1) % 3
                    time.sleep(0.05)
                    continue
                acked[key] = value
                n += 1

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            wait_until(lambda: len(acked) >= 50, 30, message="50 acknowledged puts")
            c.kill(leader, signal.SIGKILL)
            at_kill = len(acked)
            # The writer goes on through a new leader.
            wait_until(lambda: len(acked) >= at_kill + 50, 40,
                       message="puts acknowledged after the leader died")
            c.restart(leader, wait=False)
            wait_until(lambda: len(acked) >= at_kill + 100, 40,
                       message="puts acknowledged after the restart")
        finally:
            stop.set()
            t.join(10)
            if c.members[leader].proc.poll() is not None:  # failed before the restart
                c.restart(leader, wait=False)
        c.wait_healthy()
        self.assertNotEqual(c.leader(), None)
        for i in range(3):
            reader = c.client(i, timeout=10)
            self.addCleanup(reader.close)
            got = {m.key.decode(): v.decode() for v, m in reader.get_prefix(prefix)}
            missing = sorted(k for k in acked if got.get(k) != acked[k])
            self.assertEqual(missing, [], "member %d lost %d of %d acknowledged puts (first: %s)"
                             % (i, len(missing), len(acked), missing[:5]))
            # Nothing appears that was never attempted.
            self.assertTrue(set(got) <= set(acked) | {"%s%06d" % (prefix, len(acked))},
                            sorted(set(got) - set(acked))[:5])

    def test_sigterm_all_and_restart_keeps_data(self):
        c = self.cluster
        p = self.key("")
        for n in range(20):
            self.ctl_ok("put", p + "k%02d" % n, "v%d" % n, endpoint=n % 3)
        self.ctl_ok("del", p + "k00")
        before = [self.ctl_json("get", p, "--prefix", endpoint=i) for i in range(3)]
        revision = before[0]["header"]["revision"]
        lease_id = self.ctl_ok("lease", "grant", "600").split()[1]
        self.ctl_ok("put", p + "leased", "x", "--lease=" + lease_id)
        revision += 1
        for m in c.members:
            m.signal(signal.SIGTERM)
        codes = [m.wait_exit(timeout=20) for m in c.members]
        # synod exits 0 on SIGTERM; etcd re-raises the signal after its shutdown.
        self.assertTrue(all(code in (0, -signal.SIGTERM) for code in codes), codes)
        for m in c.members:
            m.start()
        c.wait_healthy()
        for i in range(3):
            after = self.ctl_json("get", p, "--prefix", endpoint=i)
            self.assertEqual(after["header"]["cluster_id"], before[i]["header"]["cluster_id"],
                             "member %d came back in another cluster (re-bootstrapped?)" % i)
            self.assertEqual(after["header"]["member_id"], before[i]["header"]["member_id"])
            self.assertEqual(after["header"]["revision"], revision)
            self.assertEqual(after["kvs"][:19], before[i]["kvs"])
            self.assertEqual(after["count"], 20)
        self.assertRegex(self.ctl_ok("lease", "timetolive", lease_id, "--keys"),
                         r"granted with TTL\(600s\), remaining\(\d+s\), attached keys\(\[%sleased\]\)"
                         % p)
        self.ctl_ok("put", p + "new", "after restart")
        self.assertEqual(self.ctl_json("get", p + "new")["header"]["revision"], revision + 1)


class LeaderLossTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_tools()

    def test_a_watch_through_a_member_without_a_leader_ends(self):
        # Short timeouts: the member gives up on its leader after 3 election timeouts.
        flags = ["--heartbeat-interval", "50", "--election-timeout", "500"]
        with Cluster(3, flags=flags) as c:
            survivor = c.members[2].endpoint
            w = c.etcdctl_background("watch", "leader-loss/k", endpoint=survivor)
            self.addCleanup(w.stop)
            for i in range(50):  # until the watch is established and delivers
                c.etcdctl_ok("put", "leader-loss/k", "v%d" % i, endpoint=survivor)
                try:
                    w.wait_for(lambda out: "\nv%d\n" % i in out, timeout=1.0, message="event")
                    break
                except AssertionError:
                    if not w.running():
                        raise
            c.kill(0)
            c.kill(1)
            started = time.monotonic()
            code = w.wait(30)
            waited = time.monotonic() - started
            self.assertNotEqual(code, 0, w.stderr)
            self.assertIn("no leader", w.stderr)
            # Not at once (a leader may come back), and not much later than 3 x 500 ms.
            self.assertGreater(waited, 1.0)
            self.assertLess(waited, 10.0)

    def test_a_lease_keep_alive_stream_through_a_member_without_a_leader_ends(self):
        # etcd's clients open keep-alive streams with "hasleader: true": the member ends
        # them once it has had no leader for 3 election timeouts, and refuses new ones.
        flags = ["--heartbeat-interval", "50", "--election-timeout", "500"]
        metadata = [("hasleader", "true")]
        with Cluster(3, flags=flags) as c:
            survivor = c.members[2]
            lease_id = c.client(2).lease(600).id
            channel = grpc.insecure_channel(survivor.endpoint)
            self.addCleanup(channel.close)
            stub = etcdrpc.LeaseStub(channel)
            requests = queue.Queue()

            def request_stream():
                while True:
                    item = requests.get()
                    if item is None:
                        return
                    yield item

            self.addCleanup(requests.put, None)
            responses = stub.LeaseKeepAlive(request_stream(), metadata=metadata, timeout=30)
            requests.put(etcdrpc.LeaseKeepAliveRequest(ID=lease_id))
            first = next(responses)
            self.assertEqual(first.ID, lease_id)
            self.assertGreater(first.TTL, 0)

            c.kill(0)
            c.kill(1)
            started = time.monotonic()
            with self.assertRaises(grpc.RpcError) as ended:
                next(responses)  # no further request: only the member can end the stream
            waited = time.monotonic() - started
            self.assertEqual((ended.exception.code(), ended.exception.details()),
                             (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
            self.assertGreater(waited, 1.0)
            self.assertLess(waited, 10.0)

            # A new stream that requires a leader is refused while there is none.
            refused = stub.LeaseKeepAlive(iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)]),
                                          metadata=metadata, timeout=10)
            with self.assertRaises(grpc.RpcError) as refusal:
                next(refused)
            self.assertEqual((refusal.exception.code(), refusal.exception.details()),
                             (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))

    def test_an_election_observe_stream_through_a_member_without_a_leader_ends(self):
        # etcd applies require-leader to every stream, Election.Observe included. No
        # Python stubs for v3election: the call is made with hand-encoded bytes.
        flags = ["--heartbeat-interval", "50", "--election-timeout", "500"]
        metadata = [("hasleader", "true")]
        request = b"\x0a\x01e"  # LeaderRequest{name: "e"}
        with Cluster(3, flags=flags) as c:
            c.client(2).put("e/candidate", "me")
            survivor = c.members[2]
            channel = grpc.insecure_channel(survivor.endpoint)
            self.addCleanup(channel.close)
            observe = channel.unary_stream("/v3electionpb.Election/Observe",
                                           request_serializer=None, response_deserializer=None)
            responses = observe(request, metadata=metadata, timeout=30)
            first = next(responses)
            self.assertIn(b"e/candidate", first)  # the leader's key, in LeaderResponse.kv

            c.kill(0)
            c.kill(1)
            started = time.monotonic()
            with self.assertRaises(grpc.RpcError) as ended:
                next(responses)  # the leader does not change: only the member ends it
            waited = time.monotonic() - started
            if not is_etcd():
                self.assertEqual((ended.exception.code(), ended.exception.details()),
                                 (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
            self.assertGreater(waited, 1.0)
            self.assertLess(waited, 10.0)

            refused = observe(request, metadata=metadata, timeout=10)
            with self.assertRaises(grpc.RpcError) as refusal:
                next(refused)
            self.assertEqual((refusal.exception.code(), refusal.exception.details()),
                             (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))


class StartupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_tools()

    def run_server(self, *args, timeout=20, cwd=None):
        return subprocess.run([server_binary()] + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)

    def test_version(self):
        r = self.run_server("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^(synod|etcd) Version: \d+\.\d+\.\d+\n")
        if not is_etcd():
            self.assertIn("API version: 3.4", r.stdout)

    def test_help(self):
        r = self.run_server("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for flag in ("--name", "--data-dir", "--listen-client-urls", "--initial-cluster",
                     "--initial-cluster-token", "--initial-cluster-state",
                     "--max-request-bytes", "--election-timeout"):
            self.assertIn(flag, r.stdout)

    def test_unknown_flag_rejected(self):
        with tempfile_dir() as tmp:
            r = self.run_server("--no-such-flag=1", cwd=tmp)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no-such-flag", r.stderr + r.stdout)
            self.assertEqual(os.listdir(tmp), [], "a refused start created files")

    def test_bad_flag_value_rejected(self):
        with tempfile_dir() as tmp:
            r = self.run_server("--initial-cluster-state=bogus", "--data-dir",
                                os.path.join(tmp, "d"), cwd=tmp)
            self.assertEqual(r.returncode, 2)  # a bad flag, as etcd's flag parser
            self.assertIn("initial-cluster-state", r.stderr + r.stdout)
            self.assertIn("bogus", r.stderr + r.stdout)

    def test_negative_count_rejected(self):
        # An unsigned flag given a negative number: refused (not wrapped around to 2^64-1).
        for flag in ("--snapshot-count", "--max-request-bytes"):
            with tempfile_dir() as tmp:
                r = self.run_server(flag + "=-1", cwd=tmp)
                self.assertEqual(r.returncode, 2, flag)
                self.assertIn(flag.lstrip("-"), r.stderr + r.stdout)
                self.assertEqual(os.listdir(tmp), [], "a refused start created files")

    @synod_only("etcd implements --auto-compaction-retention")
    def test_unsupported_etcd_flag_rejected(self):
        for args in (["--auto-compaction-retention=1"], ["-auto-compaction-retention", "1"],
                     ["--enable-v2=true"]):
            with tempfile_dir() as tmp:
                r = self.run_server(*args, cwd=tmp)
                flag = args[0].lstrip("-").split("=")[0]
                self.assertNotEqual(r.returncode, 0, args)
                self.assertIn("--" + flag, r.stderr)
                self.assertIn("not supported", r.stderr)
                self.assertEqual(os.listdir(tmp), [])

    def test_client_port_in_use(self):
        with socket.socket() as busy, tempfile_dir() as tmp:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            url = "http://127.0.0.1:%d" % port
            peer_url = "http://127.0.0.1:%d" % free_ports(1)[0]
            r = self.run_server("--data-dir", os.path.join(tmp, "d"),
                                "--listen-client-urls", url, "--advertise-client-urls", url,
                                "--listen-peer-urls", peer_url,
                                "--initial-advertise-peer-urls", peer_url,
                                "--initial-cluster", "default=" + peer_url)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("127.0.0.1:%d" % port, r.stderr)
            self.assertIn("in use", r.stderr)

    @synod_only("etcd starts with the data dir's own cluster, whatever the flags say")
    def test_data_dir_of_another_cluster_refused(self):
        alpha = Cluster(1, token="alpha-token")
        self.addCleanup(alpha.stop)
        alpha.etcdctl_ok("put", "from-alpha", "1")
        alpha.members[0].signal(signal.SIGTERM)
        self.assertEqual(alpha.members[0].wait_exit(), 0)

        # Another cluster's token: refused.
        beta = Cluster(1, token="beta-token", start=False)
        self.addCleanup(beta.stop)
        member = beta.members[0]
        shutil.copytree(alpha.members[0].data_dir, member.data_dir)
        member.start()
        code = member.wait_exit(timeout=20)
        self.assertNotEqual(code, 0)
        log = member.log_text()
        refusal = [line for line in log.splitlines()
                   if '"alpha-token"' in line and '"beta-token"' in line]
        self.assertTrue(refusal, "no message naming both cluster tokens:\n" + log)
        self.assertIn("refusing to start", refusal[0])
        self.assertNotIn("serving clients", log)

        # The same token but another member's data dir: refused too.
        gamma = Cluster(1, token="alpha-token", start=False)
        self.addCleanup(gamma.stop)
        member = gamma.members[0]
        shutil.copytree(alpha.members[0].data_dir, member.data_dir)
        member.start()
        self.assertNotEqual(member.wait_exit(timeout=20), 0)
        refusal = [line for line in member.log_text().splitlines()
                   if member.data_dir in line and "refusing to start" in line
                   and not line.startswith("=====")]
        self.assertTrue(refusal, member.log_text())
        self.assertIn("another member", refusal[0])

        # Its own member still starts from it.
        alpha.restart(0)
        self.assertEqual(alpha.etcdctl_ok("get", "from-alpha", "--print-value-only"), "1\n")


class tempfile_dir:
    """A temporary directory (removed afterwards), usable as cwd for a refused start."""

    def __enter__(self):
        import tempfile
        self.path = tempfile.mkdtemp(prefix="synod-it-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
