"""A real multi-process cluster for the integration tests.

`Cluster(n)` starts n members of synod (or of etcd itself: the flags are etcd's) on free
loopback ports, each with a fresh data dir under one temporary directory, and waits
until `etcdctl endpoint health` passes for every member. The tests then drive it with
the real clients: `etcdctl` (ETCDCTL_API=3) and python3-etcd3.

Environment:
  SYNOD_BIN         the server binary (default: build/src/server/synod under the repo
                    root). SYNOD_BIN=/usr/bin/etcd runs the same suite against etcd, to
                    check that the tests expect etcd's own behaviour.
  SYNOD_TEST_FLAGS  extra flags for every member, e.g. "--consensus=multi-paxos".
  SYNOD_TEST_KEEP   1: keep the temporary directory (data dirs and logs) afterwards.

The suite runs a private copy of the synod binary, taken when the first member starts:
other builds may relink build/src/server/synod while the suite runs, and every member
and every restart must run the same server.

Processes never outlive the test run: every child gets PR_SET_PDEATHSIG (via setpriv; SIGKILL when
the test process dies, however it dies), runs in its own session (so it can be killed
with everything it started), and is killed at exit if still running.
"""

import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SYNOD_BIN = os.environ.get("SYNOD_BIN") or os.path.join(REPO_ROOT, "build", "src", "server", "synod")
EXTRA_FLAGS = shlex.split(os.environ.get("SYNOD_TEST_FLAGS", ""))
KEEP = os.environ.get("SYNOD_TEST_KEEP") == "1"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
COMMAND_TIMEOUT_S = 5


def is_etcd():
    """True when the suite runs against etcd itself rather than synod."""
    return os.path.basename(SYNOD_BIN).startswith("etcd")


def synod_only(reason):
    """Skips a test of synod-specific behaviour when the suite runs against etcd."""
    return unittest.skipIf(is_etcd(), "synod-specific: " + reason)


_server_copy = None


def server_binary():
    """The server binary members run: a private copy of SYNOD_BIN (etcd runs in place)."""
    global _server_copy
    if is_etcd():
        return SYNOD_BIN
    if _server_copy is None:
        tmp = tempfile.mkdtemp(prefix="synod-it-bin-")
        atexit.register(shutil.rmtree, tmp, True)
        copy = os.path.join(tmp, os.path.basename(SYNOD_BIN))
        deadline = time.monotonic() + 120
        while True:  # a build may be relinking the binary right now: retry until it runs
            try:
                shutil.copy2(SYNOD_BIN, copy)
                if subprocess.run([copy, "--version"], capture_output=True,
                                  timeout=20).returncode == 0:
                    break
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("cannot copy and run the server binary %s" % SYNOD_BIN)
            time.sleep(1)
        _server_copy = copy
    return _server_copy


def require_tools():
    """The clients are installed by scripts/install-deps.sh: missing ones are a failure."""
    problems = []
    if not os.access(ETCDCTL, os.X_OK):
        problems.append("etcdctl not found (Debian package etcd-client)")
    try:
        import etcd3  # noqa: F401
    except ImportError as e:
        problems.append("python module etcd3 not importable (Debian package python3-etcd3): %s" % e)
    if not os.access(SYNOD_BIN, os.X_OK):
        problems.append("server binary %s not found (cmake --build build --target synod)" % SYNOD_BIN)
    if problems:
        raise AssertionError("; ".join(problems))


# --- process hygiene ------------------------------------------------------------------

_live = set()
_live_lock = threading.Lock()


def spawn(argv, stdout, stderr, stdin=subprocess.DEVNULL, env=None, text=None):
    """Starts a process that cannot outlive the tests (see the module comment).

    The parent-death signal is set by util-linux's setpriv, which then execs the program
    (same pid). Not by a preexec_fn: that forces a real fork(), whose atfork handlers in
    gRPC's Python library can hang or abort while gRPC threads are busy in this process;
    without one, Python spawns with vfork and runs no handlers."""
    proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--"] + list(argv), stdin=stdin,
                            stdout=stdout, stderr=stderr, env=env, text=text,
                            start_new_session=True)
    with _live_lock:
        _live.add(proc)
    return proc


def reap(proc, sig=signal.SIGKILL, timeout=10.0):
    """Signals the process group of `proc` and waits for it (SIGKILL after `timeout`)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:
        # The leader of the group is gone; its children (e.g. the command run by
        # `etcdctl lock name cmd`) may not be.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with _live_lock:
        _live.discard(proc)
    return proc.returncode


@atexit.register
def _kill_all():
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(Exception):
            os.killpg(proc.pid, signal.SIGKILL)


def _on_sigterm(signum, frame):
    # As Ctrl-C: unittest stops at once (it lets KeyboardInterrupt through), and the
    # clusters are stopped on the way out.
    _kill_all()
    raise KeyboardInterrupt("SIGTERM")


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)


_default_excepthook = threading.excepthook


def _quiet_closed_watchers(args):
    # etcd3's watcher thread dies with "Channel closed" when its client is closed (which
    # is how the tests stop it): not worth a traceback.
    if (args.thread is not None and args.thread.name.startswith("etcd3_watch")
            and isinstance(args.exc_value, ValueError) and "losed" in str(args.exc_value)):
        return
    _default_excepthook(args)


threading.excepthook = _quiet_closed_watchers


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout, interval=0.1, message="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, message, last))
        time.sleep(interval)


def etcdctl_env():
    env = dict(os.environ)
    env["ETCDCTL_API"] = "3"
    for var in ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY",
                "ETCDCTL_USER", "ETCDCTL_DIAL_TIMEOUT"):
        env.pop(var, None)
    return env


# --- members and clusters -------------------------------------------------------------

class Member:
    def __init__(self, cluster, index, name, client_port, peer_port):
        self.cluster = cluster
        self.index = index
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = os.path.join(cluster.root, name + ".data")
        self.log_path = os.path.join(cluster.root, name + ".log")
        self.proc = None
        self.extra_args = []
        self.cluster_state = "new"
        self.removed = False  # removed from the membership: not listed for new members

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def argv(self):
        return [server_binary(),
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.cluster.initial_cluster_for(self),
                "--initial-cluster-token", self.cluster.token,
                "--initial-cluster-state", self.cluster_state,
                ] + self.cluster.flags + self.extra_args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "member %s is running" % self.name
        with open(self.log_path, "ab") as log:
            log.write(("\n===== harness: starting %s: %s\n"
                       % (self.name, " ".join(shlex.quote(a) for a in self.argv()))).encode())
            log.flush()
            self.proc = spawn(self.argv(), stdout=log, stderr=subprocess.STDOUT)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=15.0):
        """Waits for the member to exit (SIGKILL after `timeout`); returns its exit code."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            reap(self.proc, signal.SIGKILL)
            raise AssertionError("member %s did not exit within %.0fs" % (self.name, timeout))
        return reap(self.proc)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class Cluster:
    """N members on loopback. Use as a context manager, or call stop() (idempotent)."""

    def __init__(self, size=3, flags=None, token=None, start=True, health_timeout=60.0,
                 name_prefix="m"):
        self.root = tempfile.mkdtemp(prefix="synod-it-")
        self.token = token or "synod-it-" + os.path.basename(self.root)
        self.flags = list(EXTRA_FLAGS) + list(flags or [])
        ports = free_ports(2 * size)
        self.members = [Member(self, i, "%s%d" % (name_prefix, i), ports[2 * i], ports[2 * i + 1])
                        for i in range(size)]
        self.stopped = False
        if start:
            try:
                self.start(health_timeout)
            except BaseException:
                self.dump_logs()
                self.stop()
                raise

    # -- lifecycle --

    def initial_cluster_for(self, member):
        # A member added later (cluster_state "existing") lists the whole membership.
        if member.cluster_state == "new":
            chosen = [m for m in self.members if m.cluster_state == "new"]
        else:
            chosen = [m for m in self.members
                      if not m.removed and (m.cluster_state == "new" or m.proc is not None
                                            or m is member)]
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in chosen)

    def start(self, health_timeout=60.0):
        for m in self.members:
            m.start()
        self.wait_healthy(timeout=health_timeout)

    def add_member_slot(self, name=None):
        """A new Member (not started) on fresh ports, to join with `member add`."""
        client_port, peer_port = free_ports(2)
        index = len(self.members)
        m = Member(self, index, name or "m%d" % index, client_port, peer_port)
        m.cluster_state = "existing"
        self.members.append(m)
        return m

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stops every member (SIGTERM, then SIGKILL after `timeout`), removes the data."""
        if self.stopped:
            return
        self.stopped = True
        for m in self.members:
            if m.running():
                with contextlib.suppress(ProcessLookupError):
                    m.signal(sig)
        deadline = time.monotonic() + timeout
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                reap(m.proc, signal.SIGKILL)
        if KEEP:
            sys.stderr.write("harness: kept %s\n" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.stop()

    def kill(self, i, sig=signal.SIGKILL, wait=True):
        """Sends `sig` to member i; with `wait`, waits for it to exit and returns its code."""
        m = self.members[i]
        m.signal(sig)
        if wait:
            return m.wait_exit()
        return None

    def restart(self, i, wait=True, timeout=60.0):
        """Starts member i again on the same ports and data dir."""
        m = self.members[i]
        if m.running():
            m.signal(signal.SIGTERM)
            m.wait_exit()
        m.start()
        if wait:
            self.wait_healthy([i], timeout=timeout)

    # -- clients --

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    def running_endpoints(self):
        return [m.endpoint for m in self.members if m.running()]

    def etcdctl_argv(self, args, endpoint=None, command_timeout=COMMAND_TIMEOUT_S):
        if endpoint is None:
            eps = ",".join(self.running_endpoints())
        elif isinstance(endpoint, int):
            eps = self.members[endpoint].endpoint
        elif isinstance(endpoint, (list, tuple)):
            eps = ",".join(self.members[e].endpoint if isinstance(e, int) else e for e in endpoint)
        else:
            eps = endpoint
        argv = [ETCDCTL, "--endpoints=" + eps, "--dial-timeout=3s"]
        if command_timeout is not None:
            argv.append("--command-timeout=%ds" % command_timeout)
        return argv + [str(a) for a in args]

    def etcdctl(self, *args, endpoint=None, input=None, timeout=None,
                command_timeout=COMMAND_TIMEOUT_S):
        """Runs `ETCDCTL_API=3 etcdctl --endpoints=... --command-timeout=...s args...`.

        `endpoint`: None (every running member), a member index, a list, or a string.
        Returns the CompletedProcess (text); never raises on a non-zero exit.
        """
        argv = self.etcdctl_argv(args, endpoint, command_timeout)
        limit = timeout if timeout is not None else (command_timeout or COMMAND_TIMEOUT_S) + 10
        proc = spawn(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=etcdctl_env(), text=True)
        try:
            out, err = proc.communicate(input=input, timeout=limit)
        except subprocess.TimeoutExpired:
            reap(proc)
            out, err = proc.communicate()
            err = (err or "") + "\nharness: etcdctl killed after %ss" % limit
        reap(proc)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def etcdctl_ok(self, *args, **kwargs):
        """etcdctl(...) that must succeed; returns stdout."""
        r = self.etcdctl(*args, **kwargs)
        if r.returncode != 0:
            raise AssertionError("etcdctl %s failed (exit %d):\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r.stdout

    def etcdctl_json(self, *args, **kwargs):
        return json.loads(self.etcdctl_ok(*(list(args) + ["-w", "json"]), **kwargs))

    def etcdctl_background(self, *args, endpoint=None, command_timeout=None):
        """A long-running etcdctl (watch, lock, elect, lease keep-alive): a BackgroundCtl."""
        return BackgroundCtl(self.etcdctl_argv(args, endpoint, command_timeout))

    def client(self, i=None, timeout=10):
        """A python3-etcd3 client on member i (default: the first running one)."""
        import etcd3
        m = self.members[i] if i is not None else next(m for m in self.members if m.running())
        return etcd3.client(host="127.0.0.1", port=m.client_port, timeout=timeout)

    # -- state --

    def health(self, indexes=None):
        eps = [self.members[i].endpoint for i in (indexes if indexes is not None
                                                   else range(len(self.members)))]
        return self.etcdctl("endpoint", "health", endpoint=eps, command_timeout=2, timeout=15)

    def wait_healthy(self, indexes=None, timeout=60.0):
        """Waits until `etcdctl endpoint health` passes for the members (default: all)."""
        last = [None]

        def healthy():
            for i in (indexes if indexes is not None else range(len(self.members))):
                m = self.members[i]
                if m.proc is not None and m.proc.poll() is not None:
                    raise AssertionError("member %s exited with code %s while waiting for health"
                                         % (m.name, m.proc.returncode))
            r = self.health(indexes)
            last[0] = r
            return r.returncode == 0

        try:
            wait_until(healthy, timeout, interval=0.2, message="endpoint health")
        except AssertionError as e:
            detail = ""
            if last[0] is not None:
                detail = "\nlast endpoint health: stdout=%r stderr=%r" % (last[0].stdout,
                                                                          last[0].stderr)
            raise AssertionError(str(e) + detail) from None

    def status(self, indexes=None):
        """`etcdctl endpoint status -w json` of the members (default: the running ones)."""
        eps = ([self.members[i].endpoint for i in indexes] if indexes is not None
               else self.running_endpoints())
        return json.loads(self.etcdctl_ok("endpoint", "status", "-w", "json", endpoint=eps))

    def member_ids(self):
        """Member index -> member id (as etcd reports it, an integer)."""
        ids = {}
        for st in self.status():
            port = int(st["Endpoint"].rsplit(":", 1)[1])
            for m in self.members:
                if m.client_port == port:
                    ids[m.index] = st["Status"]["header"]["member_id"]
        return ids

    def leader(self, timeout=20.0):
        """The index of the leader, as the running members report it (they must agree)."""
        def find():
            try:
                statuses = self.status()
            except AssertionError:
                return None
            leaders = {st["Status"].get("leader") for st in statuses}
            if len(leaders) != 1 or not next(iter(leaders)):
                return None
            leader_id = next(iter(leaders))
            for st in statuses:
                if st["Status"]["header"]["member_id"] == leader_id:
                    port = int(st["Endpoint"].rsplit(":", 1)[1])
                    return [m.index for m in self.members if m.client_port == port]
            return None
        return wait_until(find, timeout, interval=0.2, message="an agreed leader")[0]

    def dump_logs(self, lines=60, stream=None):
        stream = stream or sys.stderr
        for m in self.members:
            text = m.log_text().splitlines()
            stream.write("\n----- %s log (%s), last %d of %d lines -----\n"
                         % (m.name, m.log_path, min(lines, len(text)), len(text)))
            stream.write("\n".join(text[-lines:]) + "\n")
        stream.flush()


class BackgroundCtl:
    """A long-running etcdctl whose output is collected by a thread."""

    def __init__(self, argv):
        self.argv = argv
        self._out = []
        self._err = []
        self._cond = threading.Condition()
        self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, env=etcdctl_env())
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self._out),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self._err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, pipe, sink):
        for line in iter(pipe.readline, b""):
            with self._cond:
                sink.append(line.decode("utf-8", "replace"))
                self._cond.notify_all()
        pipe.close()  # at end of output: the process exited or closed it
        with self._cond:
            self._cond.notify_all()

    @property
    def stdout(self):
        with self._cond:
            return "".join(self._out)

    @property
    def stderr(self):
        with self._cond:
            return "".join(self._err)

    def wait_for(self, predicate, timeout, message="output"):
        """Waits until predicate(stdout) is true; raises with the output otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                out = "".join(self._out)
                if predicate(out):
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out after %.1fs waiting for %s from %s\n"
                                         "stdout: %r\nstderr: %r (exit: %s)"
                                         % (timeout, message, " ".join(self.argv[3:]), out,
                                            "".join(self._err), self.proc.poll()))
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    if predicate("".join(self._out)):
                        return "".join(self._out)
                    raise AssertionError("etcdctl %s exited (code %s) before %s\n"
                                         "stdout: %r\nstderr: %r"
                                         % (" ".join(self.argv[3:]), self.proc.returncode,
                                            message, out, "".join(self._err)))
                self._cond.wait(min(remaining, 0.2))

    def wait_lines(self, text, timeout, count=1):
        return self.wait_for(lambda out: out.count(text) >= count, timeout,
                             message="%d x %r" % (count, text))

    def running(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        code = reap(self.proc, sig, timeout=5)
        for t in self._threads:
            t.join(timeout=2)
        return code

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("etcdctl %s still running after %.0fs\nstdout: %r\nstderr: %r"
                                 % (" ".join(self.argv[3:]), timeout, self.stdout, self.stderr))
        for t in self._threads:
            t.join(timeout=2)
        return reap(self.proc)


_shared_clusters = {}


def stop_shared_clusters():
    """Stops the clusters shared by SHARED_CLUSTER test classes (call in tearDownModule)."""
    for key in list(_shared_clusters):
        _shared_clusters.pop(key).stop()


atexit.register(stop_shared_clusters)


class ClusterTestCase(unittest.TestCase):
    """A cluster per test class (started in setUpClass), or, with SHARED_CLUSTER, one
    cluster for every such class of the module (stopped by stop_shared_clusters() in
    tearDownModule). Member logs are printed when a test fails or errs."""

    CLUSTER_SIZE = 3
    CLUSTER_FLAGS = []
    SHARED_CLUSTER = False

    @classmethod
    def setUpClass(cls):
        require_tools()
        if not cls.SHARED_CLUSTER:
            cls.cluster = Cluster(cls.CLUSTER_SIZE, flags=cls.CLUSTER_FLAGS)
            return
        key = (cls.__module__, cls.CLUSTER_SIZE, tuple(cls.CLUSTER_FLAGS))
        shared = _shared_clusters.get(key)
        if shared is not None and not all(m.running() for m in shared.members
                                          if not m.removed and m.proc is not None):
            # A member died under an earlier class: report it, start afresh.
            sys.stderr.write("\nharness: a member of the shared cluster exited; logs:\n")
            shared.dump_logs()
            shared.stop()
            shared = None
        if shared is None:
            shared = _shared_clusters[key] = Cluster(cls.CLUSTER_SIZE, flags=cls.CLUSTER_FLAGS)
        cls.cluster = shared

    @classmethod
    def tearDownClass(cls):
        cluster = getattr(cls, "cluster", None)
        if cluster is not None and not cls.SHARED_CLUSTER:
            cluster.stop()

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            cluster = getattr(type(self), "cluster", None)
            if cluster is not None and not cluster.stopped:
                sys.stderr.write("\n===== member logs after %s =====\n" % self.id())
                cluster.dump_logs(lines=40)
        return outcome

    def ctl(self, *args, **kwargs):
        return self.cluster.etcdctl(*args, **kwargs)

    def ctl_ok(self, *args, **kwargs):
        return self.cluster.etcdctl_ok(*args, **kwargs)

    def ctl_json(self, *args, **kwargs):
        return self.cluster.etcdctl_json(*args, **kwargs)

    def assertCtlFails(self, result, text):
        """The etcdctl run failed and its stderr names `text` (etcd's error message)."""
        self.assertNotEqual(result.returncode, 0,
                            "expected a failure mentioning %r, got success: %r"
                            % (text, result.stdout))
        self.assertIn(text, result.stderr + result.stdout)

    def key(self, name):
        """A key private to the running test: tests of one class share a cluster."""
        return "/%s/%s" % (self._testMethodName, name)
