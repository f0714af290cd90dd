// GrpcTransport and PeerServer on loopback ports: delivery, batching, reconnection,
// bounded queues, isolation between peers, and garbage on the peer port.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>

#include "transport/grpc_transport.h"
#include "transport/peer_service.h"

namespace synod::transport {
namespace {

using namespace std::chrono_literals;

// Collects what a server delivers; optionally holds every delivery until released.
class Inbox {
 public:
  PeerService::Deliver Deliver() {
    return [this](pb::Envelope e) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !held_; });
      got_.push_back(std::move(e));
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t count, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return got_.size() >= count; });
  }
  std::vector<pb::Envelope> Got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return got_.size();
  }
  void Hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<pb::Envelope> got_;
  bool held_ = false;
};

// An envelope of one message whose index is `tag`, padded with `payload` bytes.
pb::Envelope Env(NodeId from, NodeId to, uint64_t tag, size_t payload = 0) {
  pb::Envelope e;
  e.set_group_id(1);
  e.set_from(from);
  e.set_to(to);
  pb::Message* m = e.add_messages();
  m->set_type(pb::MSG_HEARTBEAT);
  m->set_from(from);
  m->set_to(to);
  m->set_index(tag);
  if (payload > 0) m->set_snapshot_chunk(std::string(payload, 'x'));
  return e;
}

// Counters move on the sender's thread, a moment after the receiver has the bytes.
template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::string Loopback(int port) { return "127.0.0.1:" + std::to_string(port); }

std::unique_ptr<PeerServer> Listen(int port, Inbox* inbox) {
  PeerServerOptions o;
  o.address = Loopback(port);
  std::unique_ptr<PeerServer> server;
  Status s = PeerServer::Start(o, inbox->Deliver(), &server);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return server;
}

GrpcTransportOptions Options(NodeId self, std::map<NodeId, std::string> peers) {
  GrpcTransportOptions o;
  o.self = self;
  o.peers = std::move(peers);
  o.backoff_initial = 20ms;
  o.backoff_max = 200ms;
  o.connect_timeout = 200ms;
  return o;
}

// A port with nobody listening (it was listened on a moment ago, so this also checks
// that it can be listened on again at once).
int UnusedPort() {
  Inbox ignore;
  auto server = Listen(0, &ignore);
  return server->port();
}

std::vector<uint64_t> Tags(const std::vector<pb::Envelope>& envelopes) {
  std::vector<uint64_t> tags;
  for (const auto& e : envelopes) {
    for (const auto& m : e.messages()) tags.push_back(m.index());
  }
  return tags;
}

TEST(GrpcTransport, ThreeMembersExchangeEnvelopes) {
  Inbox inbox[4];
  std::unique_ptr<PeerServer> server[4];
  std::map<NodeId, std::string> peers;
  for (NodeId id : {1, 2, 3}) {
    server[id] = Listen(0, &inbox[id]);
    peers[id] = Loopback(server[id]->port());
  }
  std::unique_ptr<GrpcTransport> transport[4];
  for (NodeId id : {1, 2, 3}) transport[id] = std::make_unique<GrpcTransport>(Options(id, peers));
  for (NodeId from : {1, 2, 3}) {
    for (NodeId to : {1, 2, 3}) {
      if (from != to) transport[from]->Send(Env(from, to, from * 10 + to));
    }
  }
  for (NodeId id : {1, 2, 3}) {
    ASSERT_TRUE(inbox[id].WaitFor(2)) << "member " << id;
    std::vector<uint64_t> tags = Tags(inbox[id].Got());
    std::sort(tags.begin(), tags.end());
    std::vector<uint64_t> want;
    for (NodeId from : {1, 2, 3}) {
      if (from != id) want.push_back(from * 10 + id);
    }
    EXPECT_EQ(tags, want) << "member " << id;
    for (const auto& e : inbox[id].Got()) EXPECT_EQ(e.to(), id);
  }
  EXPECT_TRUE(WaitUntil([&] { return transport[1]->Counters(2).sent == 1; }));
  EXPECT_EQ(transport[1]->Counters(2).dropped(), 0u);
  EXPECT_TRUE(transport[1]->Counters(2).connected);
}

TEST(GrpcTransport, EnvelopesArriveInOrderManyPerWrite) {
  const int port = UnusedPort();
  GrpcTransport transport(Options(1, {{2, Loopback(port)}}));
  // Queued while the peer is away, then written together once it listens.
  for (uint64_t i = 0; i < 1000; ++i) transport.Send(Env(1, 2, i));
  Inbox inbox;
  auto server = Listen(port, &inbox);
  ASSERT_TRUE(inbox.WaitFor(1000));
  std::vector<uint64_t> want(1000);
  for (uint64_t i = 0; i < 1000; ++i) want[i] = i;
  EXPECT_EQ(Tags(inbox.Got()), want);
  EXPECT_TRUE(WaitUntil([&] { return transport.Counters(2).sent == 1000; }));
  EXPECT_LE(transport.Counters(2).batches, 2u);
}

TEST(GrpcTransport, APeerThatGoesDownGetsMessagesAgainOnceItIsBack) {
  Inbox before;
  auto server = Listen(0, &before);
  const int port = server->port();
  GrpcTransport transport(Options(1, {{2, Loopback(port)}}));
  transport.Send(Env(1, 2, 1));
  ASSERT_TRUE(before.WaitFor(1));

  server.reset();                                                  // the peer goes down
  for (uint64_t i = 2; i < 10; ++i) transport.Send(Env(1, 2, i));  // lost or queued
  std::this_thread::sleep_for(100ms);

  Inbox after;
  server = Listen(port, &after);  // the same port, at once
  ASSERT_NE(server, nullptr);
  // The engines retry; so does this test, until the new peer hears something.
  uint64_t tag = 100;
  for (int i = 0; i < 500 && after.size() == 0; ++i) {
    transport.Send(Env(1, 2, tag++));
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(after.size(), 0u);
  const PeerCounters c = transport.Counters(2);
  EXPECT_GE(c.streams, 2u);
  // The last envelope arrives, and nothing out of order (what was queued or put back
  // while the peer was away comes first).
  EXPECT_TRUE(WaitUntil([&] { return Tags(after.Got()).back() == tag - 1; }));
  const auto tags = Tags(after.Got());
  EXPECT_TRUE(std::is_sorted(tags.begin(), tags.end()));
}

TEST(GrpcTransport, AFullQueueDropsTheOldestAndCountsThem) {
  const int port = UnusedPort();
  GrpcTransportOptions o = Options(1, {{2, Loopback(port)}});
  o.queue_envelopes_max = 10;
  GrpcTransport transport(o);
  for (uint64_t i = 0; i < 100; ++i) transport.Send(Env(1, 2, i));
  PeerCounters c = transport.Counters(2);
  EXPECT_EQ(c.enqueued, 100u);
  EXPECT_EQ(c.dropped_full, 90u);
  EXPECT_EQ(c.queued, 10u);

  Inbox inbox;
  auto server = Listen(port, &inbox);
  ASSERT_TRUE(inbox.WaitFor(10));
  std::vector<uint64_t> newest;
  for (uint64_t i = 90; i < 100; ++i) newest.push_back(i);
  EXPECT_EQ(Tags(inbox.Got()), newest);
}

TEST(GrpcTransport, TheQueueIsBoundedInBytesToo) {
  const int port = UnusedPort();
  GrpcTransportOptions o = Options(1, {{2, Loopback(port)}});
  o.queue_bytes_max = 10000;
  GrpcTransport transport(o);
  for (uint64_t i = 0; i < 10; ++i) transport.Send(Env(1, 2, i, 3000));  // ~3 KB each
  const PeerCounters c = transport.Counters(2);
  EXPECT_EQ(c.queued, 3u);
  EXPECT_EQ(c.dropped_full, 7u);
  EXPECT_LE(c.queued_bytes, o.queue_bytes_max);
}

TEST(GrpcTransport, AnEnvelopeTooLargeForOneBatchIsSplitByMessageInOrder) {
  Inbox inbox;
  auto server = Listen(0, &inbox);
  GrpcTransportOptions o = Options(1, {{2, Loopback(server->port())}});
  o.batch_bytes_max = 10000;
  o.envelope_bytes_max = 50000;
  GrpcTransport transport(o);
  pb::Envelope big = Env(1, 2, 0, 3000);
  for (uint64_t i = 1; i < 10; ++i) *big.add_messages() = Env(1, 2, i, 3000).messages(0);
  transport.Send(big);
  ASSERT_TRUE(inbox.WaitFor(4));  // 3 messages of ~3 KB per part
  const auto got = inbox.Got();
  EXPECT_EQ(got.size(), 4u);
  EXPECT_EQ(Tags(got), (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  for (const auto& e : got) {
    EXPECT_LE(e.ByteSizeLong(), o.batch_bytes_max);
    EXPECT_EQ(e.group_id(), 1u);
    EXPECT_EQ(e.from(), 1u);
  }
  // One message beyond envelope_bytes_max cannot be split: dropped, counted.
  transport.Send(Env(1, 2, 99, 60000));
  EXPECT_EQ(transport.Counters(2).dropped_too_large, 1u);
}

TEST(GrpcTransport, ASlowPeerHoldsUpNoOtherPeer) {
  Inbox slow, fast;
  slow.Hold();  // its server thread blocks: flow control soon stops our writes to it
  auto slow_server = Listen(0, &slow);
  auto fast_server = Listen(0, &fast);
  auto transport = std::make_unique<GrpcTransport>(
      Options(1, {{2, Loopback(slow_server->port())}, {3, Loopback(fast_server->port())}}));
  for (uint64_t i = 0; i < 30; ++i) transport->Send(Env(1, 2, i, 1 << 20));  // 1 MB chunks
  for (uint64_t i = 0; i < 200; ++i) {
    transport->Send(Env(1, 3, i));  // heartbeats to the other peer
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(fast.WaitFor(200, 5s));
  EXPECT_LE(slow.size(), 1u);
  EXPECT_LT(transport->Counters(2).sent, 30u);  // flow control stopped the writes

  // A sender stuck in a write still stops promptly.
  const auto start = std::chrono::steady_clock::now();
  transport.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  slow.Release();
}

TEST(GrpcTransport, GarbageOnThePeerPortClosesOnlyThatConnection) {
  Inbox inbox;
  auto server = Listen(0, &inbox);
  GrpcTransport transport(Options(1, {{2, Loopback(server->port())}}));
  transport.Send(Env(1, 2, 1));
  ASSERT_TRUE(inbox.WaitFor(1));

  std::mt19937 rng(7);
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string junk(4096, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    if (attempt == 1) junk = preface + junk;  // past the preface: garbage frames
    if (attempt == 2)
      junk = preface + std::string("\x00\x00\x04\x08\x00\x00\x00\x00\x07", 9) + junk;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    (void)!::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    // The server hangs up on us: read until EOF or error.
    bool closed = false;
    for (int i = 0; i < 50 && !closed; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      closed = n <= 0;
    }
    EXPECT_TRUE(closed) << "attempt " << attempt;
    ::close(fd);
  }

  // The real peer's stream never noticed.
  transport.Send(Env(1, 2, 2));
  ASSERT_TRUE(inbox.WaitFor(2));
  EXPECT_TRUE(WaitUntil([&] { return transport.Counters(2).sent == 2; }));
  const PeerCounters c = transport.Counters(2);
  EXPECT_EQ(c.streams, 1u);
  EXPECT_EQ(c.stream_failures, 0u);
  EXPECT_EQ(server->service().streams(), 1u);
}

TEST(PeerServer, EnvelopesForSomeoneElseAreDroppedAndCounted) {
  Inbox inbox;
  PeerServerOptions o;
  o.self = 2;
  o.address = "127.0.0.1:0";
  std::unique_ptr<PeerServer> server;
  ASSERT_TRUE(PeerServer::Start(o, inbox.Deliver(), &server).ok());
  // Member 1 believes member 3 lives at member 2's address.
  GrpcTransport transport(
      Options(1, {{2, Loopback(server->port())}, {3, Loopback(server->port())}}));
  transport.Send(Env(1, 3, 1));
  transport.Send(Env(1, 2, 2));
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_TRUE(WaitUntil([&] { return server->service().misdirected() == 1; }));
  EXPECT_EQ(Tags(inbox.Got()), std::vector<uint64_t>{2});
}

TEST(PeerServer, APortInUseIsAnError) {
  Inbox inbox;
  auto first = Listen(0, &inbox);
  PeerServerOptions o;
  o.address = Loopback(first->port());
  std::unique_ptr<PeerServer> second;
  const Status s = PeerServer::Start(o, inbox.Deliver(), &second);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(second, nullptr);
}

TEST(GrpcTransport, PeersComeAndGo) {
  Inbox a, b;
  auto server_a = Listen(0, &a);
  auto server_b = Listen(0, &b);
  GrpcTransport transport(Options(1, {}));
  transport.Send(Env(1, 2, 1));
  EXPECT_EQ(transport.unknown_peer_drops(), 1u);
  transport.SetPeer(2, Loopback(server_a->port()));
  transport.Send(Env(1, 2, 2));
  ASSERT_TRUE(a.WaitFor(1));
  transport.SetPeer(2, Loopback(server_b->port()));  // the member moved
  transport.Send(Env(1, 2, 3));
  ASSERT_TRUE(b.WaitFor(1));
  EXPECT_EQ(Tags(b.Got()), std::vector<uint64_t>{3});
  transport.RemovePeer(2);
  transport.Send(Env(1, 2, 4));
  EXPECT_EQ(transport.unknown_peer_drops(), 2u);
  transport.SetPeer(1, "127.0.0.1:1");  // itself: ignored
  transport.Send(Env(2, 1, 5));
  EXPECT_EQ(transport.unknown_peer_drops(), 3u);
}

}  // namespace
}  // namespace synod::transport
