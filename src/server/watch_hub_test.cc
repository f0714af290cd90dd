// WatchHub against a real store, with a fake sink in place of gRPC: etcd 3.4's answers
// (as a real etcd 3.4.23 gives them), flow control, bounds, and the end of a stream.
#include "server/watch_hub.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kv/kv_test_util.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchCreateRequest;
using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;
using kv::DelReq;
using kv::OpPut;
using kv::PutReq;
using kv::TestStore;
using namespace std::chrono_literals;

const std::string kAll(1, '\0');

// A response as one line, as the etcd comparison script prints them.
std::string Describe(const WatchResponse& r) {
  std::string s = "wid=" + std::to_string(r.watch_id());
  if (r.created()) s += " created";
  if (r.canceled()) s += " canceled";
  if (r.compact_revision() != 0) s += " compact=" + std::to_string(r.compact_revision());
  if (!r.cancel_reason().empty()) s += " reason=" + r.cancel_reason();
  if (r.fragment()) s += " fragment";
  s += " hdr=" + std::to_string(r.header().revision());
  for (const auto& e : r.events()) {
    s += e.type() == mvccpb::Event::PUT ? " [PUT " : " [DEL ";
    s += e.kv().key() + "=" + e.kv().value() + " @" + std::to_string(e.kv().mod_revision());
    if (e.has_prev_kv()) s += " prev=" + e.prev_kv().value();
    s += "]";
  }
  return s;
}

class FakeSink : public WatchSink {
 public:
  void Read() override {
    std::lock_guard lock(mu_);
    reads_++;
    cv_.notify_all();
  }
  void Write(const WatchResponse* response) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(in_flight_) << "a second write while one is in flight";
    EXPECT_FALSE(ended_) << "a write after End";
    in_flight_ = true;
    written_ = *response;
    cv_.notify_all();
  }
  void End(grpc::Status status) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(ended_) << "End twice";
    EXPECT_FALSE(in_flight_) << "End with a write in flight";
    ended_ = true;
    status_ = status;
    cv_.notify_all();
  }

  // The write in flight, once there is one (it stays in flight until WriteDone).
  std::optional<WatchResponse> TakeWrite(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return in_flight_ && !taken_; })) return std::nullopt;
    taken_ = true;
    return written_;
  }
  void Completed() {
    std::lock_guard lock(mu_);
    in_flight_ = false;
    taken_ = false;
  }
  bool WaitReads(int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return reads_ >= n; });
  }
  int reads() {
    std::lock_guard lock(mu_);
    return reads_;
  }
  bool in_flight() {
    std::lock_guard lock(mu_);
    return in_flight_;
  }
  bool WaitEnded(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ended_; });
  }
  grpc::Status status() {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int reads_ = 0;
  bool in_flight_ = false;
  bool taken_ = false;
  bool ended_ = false;
  WatchResponse written_;
  grpc::Status status_;
};

// A client stream: requests in, responses out (each write acknowledged when taken).
class Client {
 public:
  explicit Client(WatchHub& hub) : hub_(hub) { stream_ = hub_.Open(&sink_); }
  ~Client() {
    if (!sink_.WaitEnded(0ms)) Cancel();
  }

  void Send(const WatchRequest& request) {
    // A request is handed over only while a read is outstanding, as gRPC does.
    ASSERT_TRUE(sink_.WaitReads(++sent_, 2s)) << "the hub does not read";
    hub_.Receive(stream_.get(), &request);
  }
  void Create(const std::string& key, const std::string& end = "", int64_t start = 0,
              bool prev_kv = false, int64_t id = 0) {
    WatchRequest r;
    WatchCreateRequest* c = r.mutable_create_request();
    c->set_key(key);
    c->set_range_end(end);
    c->set_start_revision(start);
    c->set_prev_kv(prev_kv);
    c->set_watch_id(id);
    Send(r);
  }
  void CreateWith(const WatchCreateRequest& c) {
    WatchRequest r;
    *r.mutable_create_request() = c;
    Send(r);
  }
  void CancelWatch(int64_t id) {
    WatchRequest r;
    r.mutable_cancel_request()->set_watch_id(id);
    Send(r);
  }
  void Progress() {
    WatchRequest r;
    r.mutable_progress_request();
    Send(r);
  }
  void HalfClose() { hub_.Receive(stream_.get(), nullptr); }
  void Cancel() { hub_.Close(stream_.get(), grpc::Status::CANCELLED); }

  // The next response, acknowledged (nullopt if none comes in time).
  std::optional<WatchResponse> Next(std::chrono::milliseconds timeout = 5s) {
    auto r = sink_.TakeWrite(timeout);
    if (r) Ack();
    return r;
  }
  std::string NextLine() {
    auto r = Next();
    return r ? Describe(*r) : "(nothing)";
  }
  // The write in flight, not acknowledged.
  std::optional<WatchResponse> Peek(std::chrono::milliseconds timeout = 5s) {
    return sink_.TakeWrite(timeout);
  }
  void Ack(bool ok = true) {
    sink_.Completed();
    hub_.WriteDone(stream_.get(), ok);
  }
  bool Quiet(std::chrono::milliseconds wait = 200ms) {
    auto r = sink_.TakeWrite(wait);
    if (r) ADD_FAILURE() << "unexpected: " << Describe(*r);
    return !r;
  }

  FakeSink& sink() { return sink_; }

 private:
  WatchHub& hub_;
  FakeSink sink_;
  std::shared_ptr<WatchStream> stream_;
  int sent_ = 0;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void Start(WatchHubOptions options = {}) {
    hub_ = std::make_unique<WatchHub>(
        store_.get(),
        [this](etcdserverpb::ResponseHeader* h) {
          h->set_cluster_id(1);
          h->set_member_id(2);
          h->set_raft_term(3);
          h->set_revision(store_->Revision());
        },
        options);
  }
  void TearDown() override {
    if (hub_) hub_->Stop();
  }
  // Applies a request and tells the hub, as the apply loop does.
  void Apply(const kvpb::Request& request) {
    store_.ApplyOk(request);
    hub_->Notify(store_->Revision());
  }
  void Put(const std::string& key, const std::string& value) { Apply(PutReq(key, value)); }

  TestStore store_;
  std::unique_ptr<WatchHub> hub_;
};

TEST_F(WatchHubTest, CreatedCarriesTheCurrentRevisionAndOnlyLaterEventsFollow) {
  Start();
  Put("a", "1");  // 2
  Client c(*hub_);
  c.Create("a");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=2");
  Put("a", "2");  // 3
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=3 [PUT a=2 @3]");
  Put("b", "1");       // 4: another key
  Apply(DelReq("a"));  // 5
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=5 [DEL a= @5]");
  EXPECT_TRUE(c.Quiet());
}

// With no stream open the hub does not follow the writes (no history reads, no wake-ups);
// a watcher that comes later still gets every event from its start revision, and new ones.
TEST_F(WatchHubTest, WritesWithNobodyWatchingCostNothingAndAreNotMissedLater) {
  Start();
  for (int i = 1; i <= 50; ++i) Put("k", std::to_string(i));  // revisions 2..51
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(hub_->Stats().tail_reads, 0u);
  EXPECT_EQ(hub_->Stats().store_reads, 0u);

  Client c(*hub_);
  c.Create("k", "", /*start=*/50);
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=51");
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=51 [PUT k=49 @50] [PUT k=50 @51]");
  Put("k", "51");  // 52
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=52 [PUT k=51 @52]");
  EXPECT_TRUE(c.Quiet());
}

// etcd 3.4.23, scenario S2 of the comparison script.
TEST_F(WatchHubTest, IdsDuplicatesEmptyRangesAndCancelsAnswerAsEtcd) {
  Start();
  Client c(*hub_);
  c.Create("x", "", 0, false, 5);
  EXPECT_EQ(c.NextLine(), "wid=5 created hdr=1");
  c.Create("x", "", 0, false, 5);
  EXPECT_EQ(c.NextLine(),
            "wid=-1 created canceled reason=mvcc: duplicate watch ID provided on the WatchStream "
            "hdr=1");
  c.Create("x");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  c.Create("x");
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=1");
  c.Create("b", "a");
  EXPECT_EQ(c.NextLine(), "wid=-1 created canceled reason=mvcc: watcher range is empty hdr=1");
  c.Create("");  // the key "\0"
  EXPECT_EQ(c.NextLine(), "wid=2 created hdr=1");
  c.CancelWatch(5);
  EXPECT_EQ(c.NextLine(), "wid=5 canceled hdr=1");
  c.CancelWatch(99);  // unknown: no answer
  c.CancelWatch(5);
  EXPECT_TRUE(c.Quiet());
  c.Create("x", "", 0, false, -3);
  EXPECT_EQ(c.NextLine(), "wid=-3 created hdr=1");
  c.Create("x");
  EXPECT_EQ(c.NextLine(), "wid=3 created hdr=1");
  Put("x", "1");
  std::set<int64_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto r = c.Next();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->events_size(), 1);
    ids.insert(r->watch_id());
  }
  EXPECT_EQ(ids, (std::set<int64_t>{-3, 0, 1, 3}));
  EXPECT_TRUE(c.Quiet());
}

TEST_F(WatchHubTest, KeyRangesAreEtcds) {
  Start();
  Client c(*hub_);
  c.Create("k", kAll);  // every key >= "k"
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  c.Create("t", "u");  // [t, u)
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=1");
  Put("j", "1");
  Put("k", "1");
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=3 [PUT k=1 @3]");
  Put("t1", "1");
  std::vector<std::string> got{c.NextLine(), c.NextLine()};
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got,
            (std::vector<std::string>{"wid=0 hdr=4 [PUT t1=1 @4]", "wid=1 hdr=4 [PUT t1=1 @4]"}));
  Put("u", "1");
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=5 [PUT u=1 @5]");
  EXPECT_TRUE(c.Quiet());
}

TEST_F(WatchHubTest, ProgressRequestIsAnsweredWithTheRevision) {
  Start();
  Put("p", "0");  // 2
  Client c(*hub_);
  c.Progress();
  EXPECT_EQ(c.NextLine(), "wid=-1 hdr=2");
  c.Create("p");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=2");
  Put("p", "1");
  c.Progress();
  // The event first: a progress answer never claims a revision whose events are unsent.
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=3 [PUT p=1 @3]");
  EXPECT_EQ(c.NextLine(), "wid=-1 hdr=3");
}

// etcd 3.4.23, scenario S4: history with prev_kv; a catching-up response carries the
// store's revision.
TEST_F(WatchHubTest, StartRevisionReplaysHistoryWithPrevKv) {
  Start();
  Put("a", "1");       // 2
  Put("a", "1");       // 3
  Put("a", "2");       // 4
  Put("b", "1");       // 5
  Apply(DelReq("a"));  // 6
  Put("c", "1");       // 7
  Client c(*hub_);
  c.Create("a", "", 1, /*prev_kv=*/true);
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=7");
  EXPECT_EQ(c.NextLine(),
            "wid=0 hdr=7 [PUT a=1 @2] [PUT a=1 @3 prev=1] [PUT a=2 @4 prev=1] [DEL a= @6 prev=2]");
  c.Create("a", "b", 3);
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=7");
  EXPECT_EQ(c.NextLine(), "wid=1 hdr=7 [PUT a=1 @3] [PUT a=2 @4] [DEL a= @6]");
}

TEST_F(WatchHubTest, FiltersDropPutsOrDeletes) {
  Start();
  Client c(*hub_);
  WatchCreateRequest noput;
  noput.set_key("f");
  noput.set_range_end("g");
  noput.add_filters(WatchCreateRequest::NOPUT);
  c.CreateWith(noput);
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  WatchCreateRequest nodelete = noput;
  nodelete.clear_filters();
  nodelete.add_filters(WatchCreateRequest::NODELETE);
  nodelete.set_prev_kv(true);
  c.CreateWith(nodelete);
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=1");
  Put("f1", "1");
  EXPECT_EQ(c.NextLine(), "wid=1 hdr=2 [PUT f1=1 @2]");
  Put("f1", "2");
  EXPECT_EQ(c.NextLine(), "wid=1 hdr=3 [PUT f1=2 @3 prev=1]");
  Apply(DelReq("f1"));
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=4 [DEL f1= @4]");
  EXPECT_TRUE(c.Quiet());
}

// etcd 3.4.23, scenario S7.
TEST_F(WatchHubTest, CompactedStartIsCreatedThenCancelledWithTheCompactRevision) {
  Start();
  for (int i = 0; i < 5; ++i) Put("a", std::to_string(i));  // 2..6
  Apply(kv::CompactReq(4));
  Client c(*hub_);
  c.Create("a", "", 1);
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=6");
  EXPECT_EQ(c.NextLine(), "wid=0 canceled compact=4 hdr=0");
  c.Create("a", "", 4);  // at the compaction revision: fine
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=6");
  EXPECT_EQ(c.NextLine(), "wid=1 hdr=6 [PUT a=2 @4] [PUT a=3 @5] [PUT a=4 @6]");
  c.Create("a", "", 3);
  EXPECT_EQ(c.NextLine(), "wid=2 created hdr=6");
  EXPECT_EQ(c.NextLine(), "wid=2 canceled compact=4 hdr=0");
  EXPECT_TRUE(c.Quiet());
}

TEST_F(WatchHubTest, CancelledWatcherGetsNothingMore) {
  Start();
  Client c(*hub_);
  c.Create("a");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  c.CancelWatch(0);
  EXPECT_EQ(c.NextLine(), "wid=0 canceled hdr=1");
  Put("a", "1");
  EXPECT_TRUE(c.Quiet());
}

TEST_F(WatchHubTest, HalfClosedStreamKeepsWatchingAsEtcd) {
  Start();
  Client c(*hub_);
  c.Create("h");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  c.HalfClose();
  Put("h", "1");
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=2 [PUT h=1 @2]");
}

TEST_F(WatchHubTest, ARevisionIsNeverSplit) {
  WatchHubOptions options;
  options.response_bytes_max = 10;  // smaller than any event
  Start(options);
  Client c(*hub_);
  c.Create("t", "u");
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  kvpb::TxnRequest txn;
  for (const char* k : {"t1", "t2", "zz", "t3"}) *txn.add_success() = OpPut(k, "1");
  Apply(kv::TxnReq(txn));
  EXPECT_EQ(c.NextLine(), "wid=0 hdr=2 [PUT t1=1 @2] [PUT t2=1 @2] [PUT t3=1 @2]");
}

// A watcher far behind catches up in many bounded responses, in order, each event once,
// and never two writes at a time (the fake sink checks).
TEST_F(WatchHubTest, CatchingUpSendsBoundedResponsesInOrder) {
  WatchHubOptions options;
  options.response_bytes_max = 1000;
  options.read_events_max = 7;
  options.tail_events_max = 16;
  Start(options);
  const std::string value(100, 'v');
  for (int i = 0; i < 200; ++i) Put("k" + std::to_string(i % 13), value);  // 2..201
  Client c(*hub_);
  c.Create("k", "l", 1);
  ASSERT_EQ(c.NextLine(), "wid=0 created hdr=201");
  int64_t expect = 2;
  int responses = 0;
  while (expect <= 201) {
    auto r = c.Next();
    ASSERT_TRUE(r) << "stuck before revision " << expect;
    responses++;
    ASSERT_GT(r->events_size(), 0);
    EXPECT_LE(r->ByteSizeLong(), 1200u);
    for (const auto& e : r->events()) EXPECT_EQ(e.kv().mod_revision(), expect++);
    EXPECT_GE(r->header().revision(), r->events().rbegin()->kv().mod_revision());
  }
  EXPECT_GT(responses, 20);
  EXPECT_GT(hub_->Stats().store_reads, 0u);
  EXPECT_TRUE(c.Quiet());
}

// A client that does not read holds one write and its cursor; everyone else goes on, and
// it catches up later from the history.
TEST_F(WatchHubTest, ASlowStreamHoldsOnlyItsOwnWrite) {
  WatchHubOptions options;
  options.tail_events_max = 8;
  Start(options);
  Client slow(*hub_), fast(*hub_);
  slow.Create("k", "l");
  fast.Create("k", "l");
  EXPECT_EQ(fast.NextLine(), "wid=0 created hdr=1");
  ASSERT_TRUE(slow.Peek());  // its `created`, never acknowledged (yet)
  for (int i = 0; i < 50; ++i) {
    Put("k" + std::to_string(i), "v");
    auto r = fast.Next();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->events_size(), 1);
    EXPECT_EQ(r->events(0).kv().mod_revision(), i + 2);
  }
  EXPECT_TRUE(slow.sink().in_flight());
  slow.Ack();
  int64_t expect = 2;
  while (expect <= 51) {
    auto r = slow.Next();
    ASSERT_TRUE(r);
    for (const auto& e : r->events()) EXPECT_EQ(e.kv().mod_revision(), expect++);
  }
  EXPECT_GT(hub_->Stats().store_reads, 0u);  // it fell out of the tail
}

TEST_F(WatchHubTest, WatchersThatKeepUpShareTheTail) {
  Start();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<Client>(*hub_));
    for (int j = 0; j < 4; ++j) {
      clients.back()->Create("k", "l");
      ASSERT_TRUE(clients.back()->Next());
    }
  }
  for (int i = 0; i < 30; ++i) Put("k" + std::to_string(i), "v");
  for (auto& c : clients) {
    std::map<int64_t, int64_t> next;  // watch id -> next revision expected
    int events = 0;
    while (events < 4 * 30) {
      auto r = c->Next();
      ASSERT_TRUE(r);
      for (const auto& e : r->events()) {
        auto& n = next.try_emplace(r->watch_id(), 2).first->second;
        EXPECT_EQ(e.kv().mod_revision(), n++);
        events++;
      }
    }
  }
  EXPECT_EQ(hub_->Stats().store_reads, 0u);
  EXPECT_EQ(hub_->Stats().watchers, 20u);
}

TEST_F(WatchHubTest, FragmentsAreCutAtTheBoundForWatchersThatAskOnly) {
  WatchHubOptions options;
  options.fragment_bytes_max = 300;
  Start(options);
  Client c(*hub_);
  WatchCreateRequest w;
  w.set_key("f");
  w.set_range_end("g");
  w.set_fragment(true);
  c.CreateWith(w);
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=1");
  w.set_fragment(false);
  c.CreateWith(w);
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=1");
  kvpb::TxnRequest txn;
  for (int i = 0; i < 6; ++i)
    *txn.add_success() = OpPut("f" + std::to_string(i), std::string(100, 'x'));
  Apply(kv::TxnReq(txn));
  int whole = 0, fragments = 0, events0 = 0;
  bool last_seen = false;
  while (whole == 0 || !last_seen) {
    auto r = c.Next();
    ASSERT_TRUE(r);
    if (r->watch_id() == 1) {
      EXPECT_FALSE(r->fragment());
      EXPECT_EQ(r->events_size(), 6);
      whole++;
      continue;
    }
    fragments++;
    EXPECT_LT(r->ByteSizeLong(), 300u);
    events0 += r->events_size();
    last_seen = !r->fragment();
  }
  EXPECT_EQ(events0, 6);
  EXPECT_GT(fragments, 2);
}

TEST_F(WatchHubTest, ProgressNotifyEveryIntervalWhenNothingHappened) {
  WatchHubOptions options;
  options.progress_notify_interval = 100ms;
  Start(options);
  Put("p", "1");  // 2
  Client c(*hub_);
  c.Create("q");  // no progress_notify
  EXPECT_EQ(c.NextLine(), "wid=0 created hdr=2");
  WatchCreateRequest w;
  w.set_key("p");
  w.set_progress_notify(true);
  c.CreateWith(w);
  EXPECT_EQ(c.NextLine(), "wid=1 created hdr=2");
  EXPECT_EQ(c.NextLine(), "wid=1 hdr=2");  // a tick passed with no event
  Put("q", "1");
  // The event for q; progress answers for p (one per tick) move to the new revision.
  bool event = false;
  int64_t progress = 2;
  while (!event || progress < 3) {
    auto r = c.Next();
    ASSERT_TRUE(r);
    if (r->watch_id() == 0) {
      EXPECT_EQ(Describe(*r), "wid=0 hdr=3 [PUT q=1 @3]");
      event = true;
      continue;
    }
    EXPECT_EQ(r->watch_id(), 1);
    EXPECT_EQ(r->events_size(), 0);
    EXPECT_GE(r->header().revision(), progress);
    progress = r->header().revision();
  }
  EXPECT_EQ(progress, 3);
}

TEST_F(WatchHubTest, TheStreamEndsOnlyAfterItsWriteInFlight) {
  Start();
  Client c(*hub_);
  c.Create("a");
  ASSERT_TRUE(c.Peek());  // `created` in flight
  c.Cancel();
  EXPECT_FALSE(c.sink().WaitEnded(100ms));
  c.Ack(false);  // the write fails: the client is gone
  EXPECT_TRUE(c.sink().WaitEnded(1s));
  EXPECT_EQ(hub_->Stats().streams, 0u);
  Put("a", "1");  // nothing may touch the ended stream
}

TEST_F(WatchHubTest, StopEndsEveryStreamAndLaterOnes) {
  Start();
  Client a(*hub_), b(*hub_);
  a.Create("a");
  ASSERT_TRUE(a.Peek());  // in flight at Stop: ended when it completes
  hub_->Stop();
  EXPECT_TRUE(b.sink().WaitEnded(1s));
  EXPECT_EQ(b.sink().status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(a.sink().WaitEnded(50ms));
  a.Ack();
  EXPECT_TRUE(a.sink().WaitEnded(1s));
  Client late(*hub_);
  EXPECT_TRUE(late.sink().WaitEnded(1s));
}

TEST_F(WatchHubTest, ReadsPauseWhileTheClientDoesNotTakeItsAnswers) {
  WatchHubOptions options;
  options.outbox_max = 3;
  Start(options);
  Client c(*hub_);
  // One answer in flight, three queued: the fourth create is read, then reading stops.
  for (int i = 0; i < 4; ++i) c.Create("k" + std::to_string(i));
  EXPECT_EQ(c.sink().reads(), 4);
  ASSERT_TRUE(c.Peek());
  EXPECT_FALSE(c.sink().WaitReads(5, 100ms));
  c.Ack();
  EXPECT_TRUE(c.sink().WaitReads(5, 1s));
  for (int i = 1; i < 4; ++i)
    EXPECT_EQ(c.NextLine(), "wid=" + std::to_string(i) + " created hdr=1");
}

}  // namespace
}  // namespace synod::server
