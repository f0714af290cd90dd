"""Crash loops: SIGKILL a member mid-stream, again and again, and lose nothing acknowledged.

The store runs RocksDB without its own WAL: the consensus WAL is the durability point, and
after a crash the state machine is replayed from it. These tests prove that with real
processes: a writer (raw etcd gRPC stubs) puts unique keys, increments a counter with
compare-and-swap txns and deletes keys it put, as fast as it can, recording every
ACKNOWLEDGED operation; after a random 0.2-1.5 s the member it writes to is SIGKILLed;
the member is restarted, and the store must hold exactly what was acknowledged.

CrashLoopSingleTest   one member, killed and restarted each iteration.
CrashLoopLeaderTest   three members; the member killed is the leader each time.
Both run with --snapshot-count=300: the kills also fall around snapshots.

After every restart (on every member, with linearizable reads):
  - every acknowledged put is readable with its value, and with the revision its put was
    answered with as mod_revision (and version 1: the keys are unique);
  - every acknowledged delete is absent, and no key appears that was never written;
  - the counter equals the acknowledged increments plus the unknown-outcome increments
    that turned out applied (at most the single in-flight one of each iteration);
  - `revision` never went backwards: every acknowledged write was answered with the
    previous revision + 1 (one writer, nothing else writes), and after the restart the
    revision is the last acknowledged one, or one more exactly when the in-flight
    (unknown-outcome) operation was applied; that outcome must then be visible in full.

The op in flight when the member dies has an unknown outcome: it is resolved from the
revision after the restart and counted separately (applied / not applied).

The gRPC work (writer, checks) runs in a helper process, the "agent" (this file run with
--agent), that never forks. The test process starts a process for every member restart
and etcdctl call; when the harness used a real fork() for that, Debian's gRPC Python 1.51
ran fork handlers that hung this loop (the pre-fork handler joining the executor thread,
cf. grpc/grpc#38251) or aborted it ("thread_pool.cc: assertion failed: state_ ==
State::kRunning") whenever the test process forked while its own gRPC threads were busy.
The harness now spawns without fork handlers (cluster.spawn), and the agent keeps the
test independent of that. The agent keeps the model of what was
acknowledged; the test process drives the loop, kills and restarts members, and keeps the
journal.

Environment:
  CRASH_KILLS   kills per test (default 25 for one member, 10 for three)
  CRASH_SEED    the random seed (default: from the clock; printed in the summary line)
  CRASH_VERBOSE 1: print the journal line of every iteration

On a loss the test fails listing the missing keys, prints the iteration journal and keeps
the member logs, the data dirs and the journal in a directory it names.
"""

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

import grpc  # used by the agent only: the test process makes no gRPC call

from etcd3 import etcdrpc

from cluster import ClusterTestCase, reap, spawn

VERBOSE = os.environ.get("CRASH_VERBOSE") == "1"
CALL_TIMEOUT_S = 10  # per RPC: the box may be busy compiling
PAGE = 5000  # keys per Range page when checking

# A restarted member serves once it has won an election: a shorter election timeout than
# the default 1000 ms keeps an iteration near two seconds (etcd accepts it too).
FAST_ELECTIONS = ["--heartbeat-interval=50", "--election-timeout=500"]
# Snapshots every few hundred entries: the kills fall before, during and after members
# flush their stores and release their logs (a snapshot that is a flush and a file without
# state, after which the log before it is gone).
FREQUENT_SNAPSHOTS = ["--snapshot-count=300"]


def kills(default):
    value = os.environ.get("CRASH_KILLS")
    return int(value) if value else default


# =======================================================================================
# The agent: a process of its own that does every gRPC call, and never forks.

def prefix_end(prefix):
    b = bytearray(prefix)
    b[-1] += 1
    return bytes(b)


class Model:
    """What the store must hold: every acknowledged operation, applied in order."""

    def __init__(self, root):
        self.data_prefix = root + b"k/"
        self.counter_key = root + b"counter"
        self.present = {}  # key -> (value, revision of its put)
        self.present_list = []  # the same keys, for random deletes
        self.present_pos = {}
        self.deleted = {}  # key -> revision of its delete
        self.counter = 0
        self.counter_rev = 0
        self.revision = 0  # the revision of the last write known applied
        self.acked = {"put": 0, "delete": 0, "increment": 0}
        self.unknown = {"applied": 0, "not applied": 0}
        self.unknown_kinds = {}

    def add(self, key, value, rev):
        self.present[key] = (value, rev)
        self.present_pos[key] = len(self.present_list)
        self.present_list.append(key)

    def remove(self, key, rev):
        del self.present[key]
        pos = self.present_pos.pop(key)
        last = self.present_list.pop()
        if last != key:
            self.present_list[pos] = last
            self.present_pos[last] = pos
        self.deleted[key] = rev

    def acknowledged(self):
        return sum(self.acked.values())


class Writer(threading.Thread):
    """Writes to one member until told to stop or until an RPC fails (its outcome is then
    unknown: recorded in `in_flight`). Owns the model while it runs."""

    def __init__(self, model, kv, iteration, rng):
        super().__init__(daemon=True, name="crash-writer-%d" % iteration)
        self.model = model
        self.kv = kv
        self.iteration = iteration
        self.rng = rng
        self.stop = threading.Event()
        self.in_flight = None  # (kind, key, value, error) of the unknown-outcome op
        self.violation = None
        self.ops = []  # (kind, key, value, revision) of the acknowledged ops, in order
        self.unexpected = None
        self.n = 0

    def run(self):
        try:
            while not self.stop.is_set():
                if not self.step():
                    return
        except Exception as e:  # a bug in the test itself: reported by the agent
            self.unexpected = repr(e)

    def check_revision(self, kind, key, rev):
        if rev != self.model.revision + 1:
            self.violation = ("iteration %d: acknowledged %s of %r answered revision %d, the "
                              "previous acknowledged write had revision %d (expected %d)"
                              % (self.iteration, kind, key, rev, self.model.revision,
                                 self.model.revision + 1))
            return False
        self.model.revision = rev
        return True

    def step(self):
        m = self.model
        r = self.rng.random()
        if r < 0.15 and m.present_list:
            kind = "delete"
            key = m.present_list[self.rng.randrange(len(m.present_list))]
            value = None
        elif r < 0.30:
            kind = "increment"
            key, value = m.counter_key, b"%d" % (m.counter + 1)
        else:
            kind = "put"
            key = m.data_prefix + b"%05d/%07d" % (self.iteration, self.n)
            value = b"v%d.%d.%08x" % (self.iteration, self.n, self.rng.getrandbits(32))
            self.n += 1
        try:
            if kind == "put":
                resp = self.kv.Put(etcdrpc.PutRequest(key=key, value=value),
                                   timeout=CALL_TIMEOUT_S)
            elif kind == "delete":
                resp = self.kv.DeleteRange(etcdrpc.DeleteRangeRequest(key=key),
                                           timeout=CALL_TIMEOUT_S)
            else:
                cmp = etcdrpc.Compare(key=key, result=etcdrpc.Compare.EQUAL,
                                      target=etcdrpc.Compare.VALUE, value=b"%d" % m.counter)
                op = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value))
                resp = self.kv.Txn(etcdrpc.TxnRequest(compare=[cmp], success=[op]),
                                   timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as e:
            self.in_flight = (kind, key, value, "%s: %s" % (e.code(), e.details()))
            return False
        rev = resp.header.revision
        if kind == "put":
            if not self.check_revision(kind, key, rev):
                return False
            m.add(key, value, rev)
        elif kind == "delete":
            if resp.deleted != 1:
                self.violation = ("iteration %d: LOST key %r: acknowledged put (value %r, "
                                  "revision %d) but a delete found nothing to delete "
                                  "(deleted=%d, revision %d)"
                                  % (self.iteration, key, m.present[key][0], m.present[key][1],
                                     resp.deleted, rev))
                return False
            if not self.check_revision(kind, key, rev):
                return False
            m.remove(key, rev)
        else:
            if not resp.succeeded:
                self.violation = ("iteration %d: the counter is not %d (acknowledged "
                                  "increments %d, applied unknown-outcome ones %d): the CAS "
                                  "increment failed (revision %d)"
                                  % (self.iteration, m.counter, m.acked["increment"],
                                     m.unknown_kinds.get(("increment", "applied"), 0), rev))
                return False
            if not self.check_revision(kind, key, rev):
                return False
            m.counter += 1
            m.counter_rev = rev
        m.acked[kind] += 1
        self.ops.append((kind, key, value, rev))
        return True


def text(b):
    return None if b is None else b.decode("utf-8", "backslashreplace")


class Agent:
    """Answers one JSON command per stdin line with one JSON line on stdout."""

    def __init__(self, root):
        self.model = Model(root.encode())
        self.channels = {}
        self.writer = None
        self.last_ops = []  # (iteration, acknowledged ops) of the last two iterations

    # -- gRPC --

    def channel(self, endpoint):
        ch = self.channels.get(endpoint)
        if ch is None:
            ch = self.channels[endpoint] = grpc.insecure_channel(endpoint)
        return ch

    def kv(self, endpoint):
        return etcdrpc.KVStub(self.channel(endpoint))

    def cmd_drop(self, endpoint):
        ch = self.channels.pop(endpoint, None)
        if ch is not None:
            ch.close()
        return {}

    def cmd_leader(self, endpoints):
        """The index (in `endpoints`) of the member they all say leads, or None."""
        leaders, ids = set(), {}
        for i, ep in enumerate(endpoints):
            try:
                st = etcdrpc.MaintenanceStub(self.channel(ep)).Status(etcdrpc.StatusRequest(),
                                                                      timeout=2)
            except grpc.RpcError:
                return {"leader": None}
            leaders.add(st.leader)
            ids[st.header.member_id] = i
        return {"leader": ids.get(leaders.pop()) if len(leaders) == 1 else None}

    def cmd_wait_serving(self, endpoint, limit):
        """Waits until the member answers Status and knows a leader. Polls with a fresh
        channel each time: a channel that found the port closed backs off for seconds."""
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            ch = grpc.insecure_channel(endpoint)
            try:
                if etcdrpc.MaintenanceStub(ch).Status(etcdrpc.StatusRequest(),
                                                      timeout=1).leader:
                    return {"serving": True}
                last = "no leader yet"
            except grpc.RpcError as e:
                last = "%s: %s" % (e.code(), e.details())
            finally:
                ch.close()
            time.sleep(0.05)
        return {"serving": False, "last": last}

    # -- writing --

    def cmd_init(self, endpoint):
        m = self.model
        resp = self.kv(endpoint).Put(etcdrpc.PutRequest(key=m.counter_key, value=b"0"),
                                     timeout=CALL_TIMEOUT_S)
        m.revision = m.counter_rev = resp.header.revision
        return {"revision": m.revision}

    def cmd_start(self, endpoint, iteration, seed):
        assert self.writer is None or not self.writer.is_alive()
        self.writer = Writer(self.model, self.kv(endpoint), iteration, random.Random(seed))
        self.rev_before = self.model.revision
        self.writer.start()
        return {}

    def cmd_writing(self):
        return {"writing": self.writer.is_alive()}

    def cmd_stop(self):
        w = self.writer
        w.stop.set()
        w.join(CALL_TIMEOUT_S + 20)
        if w.is_alive():
            return {"stuck": True}
        self.last_ops = self.last_ops[-1:] + [(w.iteration, w.ops)]
        in_flight = None
        if w.in_flight is not None:
            kind, key, value, err = w.in_flight
            in_flight = [kind, text(key), text(value), err]
        return {"ops": len(w.ops), "first": self.rev_before + 1 if w.ops else None,
                "last": self.model.revision, "in_flight": in_flight,
                "violation": w.violation, "unexpected": w.unexpected}

    # -- checking --

    def read_all(self, endpoint, prefix):
        """Every key under `prefix` (linearizable, at one revision): (rev, {key: kv})."""
        kv = self.kv(endpoint)
        end = prefix_end(prefix)
        got, start, rev = {}, prefix, 0
        while True:
            resp = kv.Range(etcdrpc.RangeRequest(key=start, range_end=end, limit=PAGE,
                                                 revision=rev), timeout=30)
            if rev == 0:
                rev = resp.header.revision
            for item in resp.kvs:
                got[item.key] = item
            if not resp.more or not resp.kvs:
                return rev, got
            start = resp.kvs[-1].key + b"\0"

    def resolve(self, rev):
        """Decides the unknown-outcome op from the revision after the restart: a failure
        message, or (None, what it resolved to)."""
        m = self.model
        w = self.writer
        in_flight = w.in_flight if w is not None else None
        if rev < m.revision:
            return ("revision went BACKWARDS after the restart: %d, the last acknowledged "
                    "write had %d" % (rev, m.revision)), None
        if in_flight is None:
            if rev != m.revision:
                return ("revision %d after the restart, the last acknowledged write had %d "
                        "and nothing was in flight" % (rev, m.revision)), None
            return None, ""
        kind, key, value, _ = in_flight
        applied = rev == m.revision + 1
        if not applied and rev != m.revision:
            return ("revision %d after the restart: the last acknowledged write had %d, one "
                    "op was in flight (%s %r)" % (rev, m.revision, kind, key)), None
        if applied:
            m.revision = rev
            if kind == "put":
                m.add(key, value, rev)
            elif kind == "delete":
                m.remove(key, rev)
            else:
                m.counter += 1
                m.counter_rev = rev
        outcome = "applied" if applied else "not applied"
        m.unknown[outcome] += 1
        m.unknown_kinds[(kind, outcome)] = m.unknown_kinds.get((kind, outcome), 0) + 1
        w.in_flight = None
        return None, " -> %s (revision %d after the restart)" % (outcome, rev)

    def cmd_check(self, endpoints, names, kill):
        resolution = None
        for ep, name in zip(endpoints, names):
            rev, got = self.read_all(ep, self.model.data_prefix)
            crev, counter = self.read_all(ep, self.model.counter_key)
            if crev != rev:  # nothing writes while checking
                return {"failure": "member %s: revision %d then %d while nothing writes"
                        % (name, rev, crev)}
            if resolution is None:
                failure, resolution = self.resolve(rev)
                if failure:
                    return {"failure": failure}
            failure = self.check_member(kill, name, rev, got,
                                        counter.get(self.model.counter_key))
            if failure:
                return {"failure": failure}
        return {"resolution": resolution}

    def check_member(self, kill, name, rev, got, counter):
        m = self.model
        problems = []
        if rev != m.revision:
            problems.append("revision %d, expected %d" % (rev, m.revision))
        missing = sorted(k for k in m.present if k not in got)
        wrong = sorted(k for k in m.present if k in got and
                       (got[k].value != m.present[k][0] or got[k].mod_revision != m.present[k][1]
                        or got[k].version != 1))
        resurrected = sorted(k for k in got if k in m.deleted)
        phantom = sorted(k for k in got if k not in m.present and k not in m.deleted)
        if counter is None:
            problems.append("the counter key is MISSING (expected %d)" % m.counter)
        elif counter.value != b"%d" % m.counter or counter.mod_revision != m.counter_rev:
            problems.append("counter = %r (mod_revision %d), expected %d (mod_revision %d): "
                            "%d acknowledged increments + %d applied unknown-outcome ones"
                            % (counter.value, counter.mod_revision, m.counter, m.counter_rev,
                               m.acked["increment"],
                               m.unknown_kinds.get(("increment", "applied"), 0)))

        def listing(keys, show):
            return "\n    ".join(show(k) for k in keys[:200]) + (
                "\n    ... (%d more)" % (len(keys) - 200) if len(keys) > 200 else "")
        if missing:
            problems.append("%d acknowledged puts LOST (missing):\n    %s" % (
                len(missing), listing(missing, lambda k: "%s (value %s, put at revision %d)"
                                      % (text(k), text(m.present[k][0]), m.present[k][1]))))
        if wrong:
            problems.append("%d keys with the wrong value or revision:\n    %s" % (
                len(wrong), listing(wrong, lambda k: "%s: %r mod_revision %d version %d, "
                                    "expected %r at %d" % (text(k), got[k].value,
                                                           got[k].mod_revision, got[k].version,
                                                           m.present[k][0], m.present[k][1]))))
        if resurrected:
            problems.append("%d acknowledged deletes LOST (the key is back):\n    %s" % (
                len(resurrected), listing(resurrected, lambda k: "%s (deleted at revision %d)"
                                          % (text(k), m.deleted[k]))))
        if phantom:
            problems.append("%d keys never written:\n    %s" % (
                len(phantom), listing(phantom, text)))
        if not problems:
            return None
        lost = len(missing) + len(wrong) + len(resurrected)
        if counter is not None and counter.value.isdigit():
            lost += max(0, m.counter - int(counter.value))
        elif counter is None:
            lost += m.counter
        return ("after kill %d, member %s: lost=%d\n  %s"
                % (kill, name, lost, "\n  ".join(problems)))

    # -- reporting --

    def cmd_summary(self):
        m = self.model
        return {"acked": m.acked, "acknowledged": m.acknowledged(), "unknown": m.unknown,
                "keys": len(m.present), "counter": m.counter, "revision": m.revision}

    def cmd_write_ops(self, path):
        with open(path, "w") as f:
            for it, ops in self.last_ops:
                f.write("acknowledged ops of iteration %d (kind, key, value, revision):\n" % it)
                for op in ops:
                    f.write("  %r\n" % (op,))
            w = self.writer
            if w is not None and w.in_flight is not None:
                f.write("in flight (outcome unknown): %r\n" % (w.in_flight,))
        return {}

    def serve(self, stdin, stdout):
        for line in stdin:
            request = json.loads(line)
            name = request.pop("cmd")
            try:
                reply = getattr(self, "cmd_" + name)(**request)
            except Exception as e:
                reply = {"error": "%s failed: %r\n%s" % (name, e, traceback.format_exc())}
            stdout.write(json.dumps(reply) + "\n")
            stdout.flush()


def agent_main(root):
    Agent(root).serve(sys.stdin, sys.stdout)


# =======================================================================================
# The test process: members, kills, restarts (all of them forks), and the journal.

class AgentProxy:
    """The agent process, started with the harness (it dies with the tests)."""

    def __init__(self, root, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = spawn([sys.executable, os.path.abspath(__file__), "--agent", root],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.replies = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def call(self, cmd, timeout=120, **args):
        args["cmd"] = cmd
        try:
            self.proc.stdin.write((json.dumps(args) + "\n").encode())
            self.proc.stdin.flush()
            reply = self.replies.get(timeout=timeout)
        except (OSError, queue.Empty) as e:
            reply = {"error": "no answer (%r)" % e}
        if reply is None:
            reply = {"error": "the agent exited (code %s)" % self.proc.poll()}
        if "error" in reply:
            with open(self.log_path, "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
            raise AssertionError("crash agent: %s: %s\nagent stderr:\n%s"
                                 % (cmd, reply["error"], tail))
        return reply

    def close(self):
        try:
            self.proc.stdin.close()  # the agent exits at the end of its input
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        reap(self.proc)
        self.reader.join(5)
        self.proc.stdout.close()
        self.log.close()


class CrashLoop:
    """The loop shared by both tests; `test` is the running ClusterTestCase."""

    def __init__(self, test, kills_count, leader_kills):
        self.test = test
        self.cluster = test.cluster
        self.kills = kills_count
        self.leader_kills = leader_kills
        seed = os.environ.get("CRASH_SEED")
        self.seed = int(seed) if seed else int(time.time() * 1000) % 1000000007
        self.rng = random.Random(self.seed)
        self.journal = []  # one line per iteration
        self.leader_moved = 0
        self.pre_kill_errors = 0
        self.agent = None

    def endpoint(self, i):
        return self.cluster.members[i].endpoint

    def run(self):
        self.agent = AgentProxy("/crash-%s/" % self.test._testMethodName,
                                os.path.join(self.cluster.root, "crash-agent.log"))
        try:
            return self.loop()
        finally:
            self.agent.close()

    def loop(self):
        c, agent = self.cluster, self.agent
        start = time.monotonic()
        agent.call("init", endpoint=self.endpoint(0))
        self.check(-1)
        for it in range(self.kills):
            target = c.leader() if self.leader_kills else 0
            delay = self.rng.uniform(0.2, 1.5)
            agent.call("start", endpoint=self.endpoint(target), iteration=it,
                       seed=self.rng.getrandbits(64))
            time.sleep(delay)
            victim = target
            if self.leader_kills:
                now = agent.call("leader", endpoints=c.endpoints)["leader"]
                if now is not None and now != victim:
                    self.leader_moved += 1
                    victim = now
            # Else the writer stopped on an error before the kill.
            was_writing = agent.call("writing")["writing"]
            os.kill(c.members[victim].proc.pid, signal.SIGKILL)
            c.members[victim].wait_exit()
            r = agent.call("stop")
            if r.get("stuck"):
                raise AssertionError("iteration %d: the writer is stuck" % it)
            if r["unexpected"]:
                raise AssertionError("iteration %d: the writer failed: %s" % (it, r["unexpected"]))
            agent.call("drop", endpoint=self.endpoint(victim))
            line = ("iteration %d: wrote to m%d, SIGKILL m%d%s after %.3fs; %d ops acknowledged"
                    % (it, target, victim, " (the leader)" if self.leader_kills else "", delay,
                       r["ops"]))
            if r["ops"]:
                line += " (revisions %d..%d)" % (r["first"], r["last"])
            if r["in_flight"] is not None:
                kind, key, value, err = r["in_flight"]
                line += "; in flight: %s %s%s (%s)" % (kind, key,
                                                       "" if value is None else " = " + value, err)
                if not was_writing:
                    self.pre_kill_errors += 1
                    line += " [failed BEFORE the kill]"
            else:
                line += "; nothing in flight"
            self.journal.append(line)
            if r["violation"] is not None:
                self.fail("violation during the stream: " + r["violation"])
            restart_at = time.monotonic()
            c.restart(victim, wait=False)
            serving = agent.call("wait_serving", endpoint=self.endpoint(victim), limit=60)
            if not c.members[victim].running():
                raise AssertionError("member m%d exited with code %s after its restart"
                                     % (victim, c.members[victim].proc.returncode))
            if not serving["serving"]:
                raise AssertionError("member m%d not serving 60s after its restart (last: %s)"
                                     % (victim, serving["last"]))
            c.wait_healthy()
            healthy_at = time.monotonic()
            self.check(it)
            self.journal[-1] += "; healthy %.2fs after the restart, checked in %.2fs" % (
                healthy_at - restart_at, time.monotonic() - healthy_at)
            if VERBOSE:
                sys.stderr.write("\n" + self.journal[-1])
        wall = time.monotonic() - start
        s = agent.call("summary")
        unknown = s["unknown"]["applied"] + s["unknown"]["not applied"]
        summary = ("crash loop summary (%d member%s, %s): kills=%d acknowledged=%d "
                   "(puts=%d deletes=%d increments=%d) lost=0 unknown-outcome=%d "
                   "(applied=%d, not applied=%d; failed before the kill: %d; kills with no op "
                   "in flight: %d) keys=%d counter=%d revision=%d%s seed=%d wall=%.1fs"
                   % (len(c.members), "s" if len(c.members) > 1 else "",
                      " ".join(c.flags) or "default flags", self.kills, s["acknowledged"],
                      s["acked"]["put"], s["acked"]["delete"], s["acked"]["increment"],
                      unknown, s["unknown"]["applied"], s["unknown"]["not applied"],
                      self.pre_kill_errors, self.kills - unknown, s["keys"], s["counter"],
                      s["revision"], " leader-moved-before-kill=%d" % self.leader_moved
                      if self.leader_kills else "", self.seed, wall))
        sys.stderr.write("\n" + summary + "\n")
        sys.stderr.flush()
        return summary

    def check(self, it):
        names = [m.name for m in self.cluster.members]
        r = self.agent.call("check", endpoints=self.cluster.endpoints, names=names, kill=it + 1,
                            timeout=300)
        if "failure" in r:
            self.fail(r["failure"])
        if self.journal:
            self.journal[-1] += r["resolution"]

    def fail(self, message):
        """Keeps the evidence (journal, acknowledged ops, member logs and data dirs)."""
        keep = tempfile.mkdtemp(prefix="synod-crash-failure-")
        try:
            self.agent.call("write_ops", path=os.path.join(keep, "ops.txt"))
            with open(os.path.join(keep, "journal.txt"), "w") as f:
                f.write("seed %d, flags %r\n" % (self.seed, self.cluster.flags))
                f.write("\n".join(self.journal) + "\n\nFAILURE:\n%s\n" % message)
            shutil.copytree(self.cluster.root, os.path.join(keep, "cluster"),
                            ignore_dangling_symlinks=True, dirs_exist_ok=True)
        except Exception as e:  # keep what we can
            message += "\n(keeping the evidence failed: %r)" % e
        tail = "\n".join(self.journal[-8:])
        raise AssertionError("%s\n\nseed %d; last iterations:\n%s\n\njournal, acknowledged ops, "
                             "member logs and data dirs kept in %s"
                             % (message, self.seed, tail, keep))


class CrashLoopSingleTest(ClusterTestCase):
    CLUSTER_SIZE = 1
    CLUSTER_FLAGS = FAST_ELECTIONS + FREQUENT_SNAPSHOTS

    def test_sigkill_loop_single_member(self):
        CrashLoop(self, kills(25), leader_kills=False).run()


class CrashLoopLeaderTest(ClusterTestCase):
    CLUSTER_SIZE = 3
    CLUSTER_FLAGS = FAST_ELECTIONS + FREQUENT_SNAPSHOTS

    def test_sigkill_leader_loop(self):
        CrashLoop(self, kills(10), leader_kills=True).run()


if __name__ == "__main__":
    if "--agent" in sys.argv:
        agent_main(sys.argv[sys.argv.index("--agent") + 1])
    else:
        unittest.main()
