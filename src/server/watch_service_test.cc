// The Watch service over gRPC (a real server and client on loopback, a WatchHub over a test
// store, no consensus): the reactor's life — cancel with writes in flight, shutdown with
// open streams — and many streams at once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "kv/kv_test_util.h"
#include "server/watch_hub.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;
using namespace std::chrono_literals;

class WatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_ = std::make_shared<WatchHub>(store_.get(), [this](etcdserverpb::ResponseHeader* h) {
      h->set_cluster_id(7);
      h->set_revision(store_->Revision());
    });
    service_ = MakeWatchService(
        hub_, [this] { return has_leader_.load(); }, [this] { on_stop_calls_++; });
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = etcdserverpb::Watch::NewStub(channel_);
  }
  void TearDown() override {
    StopWatchService(service_.get());
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 5s);
    server_.reset();
    service_.reset();
    EXPECT_EQ(on_stop_calls_.load(), 1);
  }
  void Put(const std::string& key, const std::string& value) {
    store_.ApplyOk(kv::PutReq(key, value));
    hub_->Notify(store_->Revision());
  }
  static WatchRequest Create(const std::string& key, const std::string& end = "") {
    WatchRequest r;
    r.mutable_create_request()->set_key(key);
    r.mutable_create_request()->set_range_end(end);
    return r;
  }
  bool WaitStreams(uint64_t n, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (hub_->Stats().streams != n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  kv::TestStore store_;
  std::shared_ptr<WatchHub> hub_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  std::atomic<int> on_stop_calls_{0};
  std::atomic<bool> has_leader_{true};
};

// etcd's require-leader: a client that sends "hasleader: true" is refused while the member
// has no leader, and its open streams end when the member has long had none; other
// clients' streams go on.
TEST_F(WatchServiceTest, StreamsThatRequireALeaderEndWithoutOne) {
  grpc::ClientContext plain_ctx, leader_ctx;
  leader_ctx.AddMetadata("hasleader", "true");
  auto plain = stub_->Watch(&plain_ctx);
  auto requiring = stub_->Watch(&leader_ctx);
  WatchResponse r;
  ASSERT_TRUE(plain->Write(Create("a")));
  ASSERT_TRUE(plain->Read(&r));
  ASSERT_TRUE(requiring->Write(Create("a")));
  ASSERT_TRUE(requiring->Read(&r));
  ASSERT_TRUE(WaitStreams(2));

  hub_->EndStreamsRequiringLeader(grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
  EXPECT_FALSE(requiring->Read(&r));
  const grpc::Status ended = requiring->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ended.error_message(), "etcdserver: no leader");
  Put("a", "1");
  ASSERT_TRUE(plain->Read(&r)) << "a stream that did not require a leader goes on";
  EXPECT_EQ(r.events_size(), 1);

  has_leader_ = false;
  grpc::ClientContext late_ctx;
  late_ctx.AddMetadata("hasleader", "true");
  auto late = stub_->Watch(&late_ctx);
  EXPECT_FALSE(late->Read(&r));
  EXPECT_EQ(late->Finish().error_message(), "etcdserver: no leader");

  plain_ctx.TryCancel();
  plain->Finish();
  EXPECT_TRUE(WaitStreams(0));
}

TEST_F(WatchServiceTest, CreatePutCancel) {
  grpc::ClientContext ctx;
  auto stream = stub_->Watch(&ctx);
  ASSERT_TRUE(stream->Write(Create("a")));
  WatchResponse r;
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_TRUE(r.created());
  EXPECT_EQ(r.watch_id(), 0);
  EXPECT_EQ(r.header().cluster_id(), 7u);
  Put("a", "1");
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_EQ(r.events_size(), 1);
  EXPECT_EQ(r.events(0).kv().value(), "1");
  WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(0);
  ASSERT_TRUE(stream->Write(cancel));
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_TRUE(r.canceled());
  // Half-closed, the stream stays (as etcd's) until the client cancels it.
  stream->WritesDone();
  EXPECT_TRUE(WaitStreams(1));
  ctx.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitStreams(0));
}

// The client stops reading: the server's write waits on flow control while the watcher
// falls behind; then the client cancels. The write completes (failed) after the cancel,
// and the stream ends from there.
TEST_F(WatchServiceTest, CancelWithAWriteInFlight) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  auto stream = stub_->Watch(ctx.get());
  ASSERT_TRUE(stream->Write(Create("k", "l")));
  WatchResponse r;
  ASSERT_TRUE(stream->Read(&r));
  const std::string value(256 * 1024, 'v');
  for (int i = 0; i < 64; ++i) Put("k" + std::to_string(i % 8), value);  // 16 MiB of events
  std::this_thread::sleep_for(300ms);  // the server fills the flow-control window
  ctx->TryCancel();
  stream->Finish();
  EXPECT_TRUE(WaitStreams(0));
  EXPECT_LE(hub_->Stats().store_reads, 64u);
}

TEST_F(WatchServiceTest, StopEndsOpenStreamsAtOnce) {
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>>> streams;
  for (int i = 0; i < 4; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub_->Watch(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(Create("s")));
    WatchResponse r;
    ASSERT_TRUE(streams.back()->Read(&r));
  }
  const auto start = std::chrono::steady_clock::now();
  StopWatchService(service_.get());
  server_->Shutdown(std::chrono::system_clock::now() + 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  for (auto& s : streams) {
    WatchResponse r;
    while (s->Read(&r)) {
    }
    grpc::Status status = s->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(status.error_message(), "etcdserver: server stopped");
  }
}

// Streams x watchers x writes, concurrently: every watcher sees every event, in order.
TEST_F(WatchServiceTest, ManyStreamsSeeEveryEventInOrder) {
  constexpr int kStreams = 8, kWatchers = 4, kPuts = 300;
  std::vector<std::thread> readers;
  std::atomic<int> ready{0}, failures{0};
  for (int s = 0; s < kStreams; ++s) {
    readers.emplace_back([&, s] {
      grpc::ClientContext ctx;
      auto stream = stub_->Watch(&ctx);
      for (int w = 0; w < kWatchers; ++w) {
        if (!stream->Write(Create("k", "l"))) failures++;
      }
      std::map<int64_t, int64_t> next;  // watch id -> next revision
      WatchResponse r;
      for (int w = 0; w < kWatchers; ++w) {
        if (!stream->Read(&r) || !r.created()) failures++;
        next[r.watch_id()] = r.header().revision() + 1;
      }
      ready++;
      int events = 0;
      while (events < kWatchers * kPuts && stream->Read(&r)) {
        for (const auto& e : r.events()) {
          if (e.kv().mod_revision() != next[r.watch_id()]++) failures++;
          events++;
        }
      }
      if (events != kWatchers * kPuts) failures++;
      (void)s;
      ctx.TryCancel();
      stream->Finish();
    });
  }
  while (ready.load() < kStreams) std::this_thread::sleep_for(1ms);
  for (int i = 0; i < kPuts; ++i) Put("k" + std::to_string(i % 17), std::to_string(i));
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(WaitStreams(0));
}

}  // namespace
}  // namespace synod::server
