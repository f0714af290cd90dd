#include "transport/grpc_transport.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "base/thread_name.h"
#include "synod/peer.grpc.pb.h"

namespace synod::transport {

namespace v1 = ::synod::v1;
using Clock = std::chrono::system_clock;

// One peer: its queue, its channel and the thread that writes the one stream.
class GrpcTransport::PeerLink {
 public:
  PeerLink(const GrpcTransportOptions& options, const std::string& address) : options_(options) {
    grpc::ChannelArguments args;
    // gRPC's own reconnect back-off (1 s, growing to 120 s) would keep a restarted peer
    // unreachable for minutes; bound it like ours.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, Ms(options.backoff_initial));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Ms(options.backoff_max));
    // A connection of our own, even towards an address another channel in this process
    // already uses (members sharing a process in tests must not share connections).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Ms(options.keepalive_interval));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Ms(options.keepalive_timeout));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Peer::NewStub(channel_);
    thread_ = std::thread([this] {
      NameThisThread("synod-peer-send");
      Run();
    });
  }

  ~PeerLink() { Stop(); }

  // Stops and joins the sender. Called by whoever removes the link, so that a Send
  // still holding the last reference never waits for a join.
  void Stop() {
    RequestStop();
    if (thread_.joinable()) thread_.join();
  }

  // Tells the sender to stop, without waiting.
  void RequestStop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();  // unblocks a Write
    }
    cv_.notify_all();
  }

  void Enqueue(pb::Envelope envelope, size_t bytes) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      queue_.push_back(Queued{std::move(envelope), bytes, false});
      counters_.enqueued++;
      counters_.queued_bytes += bytes;
      TrimLocked();
    }
    cv_.notify_one();
  }

  void CountTooLarge() {
    std::lock_guard lock(mu_);
    counters_.dropped_too_large++;
  }

  PeerCounters counters() const {
    std::lock_guard lock(mu_);
    PeerCounters c = counters_;
    c.queued = queue_.size();
    return c;
  }

 private:
  struct Queued {
    pb::Envelope envelope;
    size_t bytes;
    bool retried;  // already in a write that failed
  };

  // Drops the oldest past either bound (but never the last one left).
  void TrimLocked() {
    while (queue_.size() > options_.queue_envelopes_max ||
           (counters_.queued_bytes > options_.queue_bytes_max && queue_.size() > 1)) {
      counters_.queued_bytes -= queue_.front().bytes;
      queue_.pop_front();
      counters_.dropped_full++;
    }
  }

  // A write failed: its envelopes go back to the front of the queue for the next
  // stream, once (the peer may have received some: duplicates are harmless to the
  // engines, and a second failure means the batch itself may be the problem).
  void RequeueLocked(v1::PeerBatch* batch, const std::vector<Queued>& taken) {
    for (int i = batch->envelopes_size() - 1; i >= 0; --i) {
      const Queued& meta = taken[static_cast<size_t>(i)];
      if (meta.retried) {
        counters_.dropped_broken++;
        continue;
      }
      counters_.requeued++;
      counters_.queued_bytes += meta.bytes;
      queue_.push_front(Queued{std::move(*batch->mutable_envelopes(i)), meta.bytes, true});
    }
    TrimLocked();
  }

  static int Ms(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }

  // Connects, streams until the stream breaks, backs off, again, until stopped.
  void Run() {
    auto backoff = options_.backoff_initial;
    for (;;) {
      bool wrote = false;
      if (Connect()) {
        if (RunStream(&wrote)) return;  // stopped
      } else {
        if (Stopping()) return;
        std::lock_guard lock(mu_);
        counters_.connect_failures++;
      }
      if (wrote) backoff = options_.backoff_initial;
      if (!SleepFor(backoff)) return;
      backoff = std::min(backoff * 2, options_.backoff_max);
    }
  }

  // Waits up to connect_timeout for a ready connection, in slices so that a stop is
  // not kept waiting.
  bool Connect() {
    const auto deadline = Clock::now() + options_.connect_timeout;
    for (;;) {
      if (Stopping()) return false;
      const auto slice = std::min(deadline, Clock::now() + std::chrono::milliseconds(100));
      if (channel_->WaitForConnected(slice)) return true;
      if (Clock::now() >= deadline) return false;
    }
  }

  // One stream's life. Returns true when it ended because the link is stopping;
  // `wrote` tells whether any write succeeded.
  bool RunStream(bool* wrote) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return true;
      stream_ctx_ = &ctx;
    }
    v1::StreamAck ack;
    std::unique_ptr<grpc::ClientWriter<v1::PeerBatch>> writer = stub_->Stream(&ctx, &ack);
    {
      std::lock_guard lock(mu_);
      counters_.streams++;
      counters_.connected = true;
    }
    bool broken = false;
    v1::PeerBatch batch;
    std::vector<Queued> taken;  // what is in `batch`: sizes and retry marks
    while (TakeBatch(&batch, &taken)) {
      if (!writer->Write(batch)) {
        std::lock_guard lock(mu_);
        RequeueLocked(&batch, taken);
        broken = true;
        break;
      }
      *wrote = true;
      std::lock_guard lock(mu_);
      counters_.sent += taken.size();
      counters_.batches++;
    }
    // Stopping: the context is cancelled already. Broken: the call is over. Either way
    // Finish returns at once.
    const grpc::Status status = writer->Finish();
    std::lock_guard lock(mu_);
    stream_ctx_ = nullptr;
    counters_.connected = false;
    if (broken) {
      counters_.stream_failures++;
      counters_.last_error = status.error_message();
    }
    return !broken;
  }

  // Waits for queued envelopes and moves up to batch_bytes_max of them (at least one)
  // into `batch`, their sizes and retry marks into `taken`. False once stopping.
  bool TakeBatch(v1::PeerBatch* batch, std::vector<Queued>* taken) {
    batch->Clear();
    batch->set_from(options_.self);
    taken->clear();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return false;
    size_t bytes = 0;
    while (!queue_.empty() &&
           (taken->empty() || bytes + queue_.front().bytes <= options_.batch_bytes_max)) {
      Queued& q = queue_.front();
      bytes += q.bytes;
      counters_.queued_bytes -= q.bytes;
      *batch->add_envelopes() = std::move(q.envelope);
      taken->push_back(Queued{pb::Envelope(), q.bytes, q.retried});
      queue_.pop_front();
    }
    return true;
  }

  bool SleepFor(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [&] { return stopping_; });
  }

  bool Stopping() const {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  const GrpcTransportOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Peer::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;  // the open stream, for the destructor
  PeerCounters counters_;

  std::thread thread_;  // last: starts once everything above is built
};

GrpcTransport::GrpcTransport(GrpcTransportOptions options) : options_(std::move(options)) {
  for (const auto& [id, address] : options_.peers) {
    if (id != options_.self) links_[id] = std::make_shared<PeerLink>(options_, address);
  }
}

GrpcTransport::~GrpcTransport() {
  std::map<NodeId, std::shared_ptr<PeerLink>> links;
  {
    std::lock_guard lock(mu_);
    links.swap(links_);
  }
  for (auto& [id, link] : links) link->RequestStop();  // all at once, then wait
  for (auto& [id, link] : links) link->Stop();
}

void GrpcTransport::Send(pb::Envelope envelope) {
  std::shared_ptr<PeerLink> link;
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(envelope.to());
    if (it == links_.end()) {
      unknown_peer_drops_++;
      return;
    }
    link = it->second;
  }
  const size_t bytes = envelope.ByteSizeLong();
  if (bytes <= options_.batch_bytes_max || envelope.messages_size() <= 1) {
    if (bytes > options_.envelope_bytes_max) {
      link->CountTooLarge();
      return;
    }
    link->Enqueue(std::move(envelope), bytes);
    return;
  }
  // Too big for one batch: split by message, in order, so that no single write (and no
  // single gRPC message) grows with the number of messages a Ready holds.
  pb::Envelope part;
  auto start_part = [&] {
    part.Clear();
    part.set_group_id(envelope.group_id());
    part.set_from(envelope.from());
    part.set_to(envelope.to());
  };
  auto flush = [&] {
    if (part.messages_size() == 0) return;
    const size_t part_bytes = part.ByteSizeLong();
    if (part_bytes > options_.envelope_bytes_max) {
      link->CountTooLarge();
    } else {
      link->Enqueue(std::move(part), part_bytes);
    }
    start_part();
  };
  start_part();
  size_t part_bytes = 0;
  for (pb::Message& m : *envelope.mutable_messages()) {
    const size_t m_bytes = m.ByteSizeLong();
    if (part.messages_size() > 0 && part_bytes + m_bytes > options_.batch_bytes_max) {
      flush();
      part_bytes = 0;
    }
    *part.add_messages() = std::move(m);
    part_bytes += m_bytes;
  }
  flush();
}

void GrpcTransport::SetPeer(NodeId id, const std::string& address) {
  if (id == options_.self) return;
  auto link = std::make_shared<PeerLink>(options_, address);
  std::shared_ptr<PeerLink> old;
  {
    std::lock_guard lock(mu_);
    old = std::exchange(links_[id], std::move(link));
  }
  if (old) old->Stop();  // outside the lock: Send is never held up by a join
}

void GrpcTransport::RemovePeer(NodeId id) {
  std::shared_ptr<PeerLink> old;
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(id);
    if (it == links_.end()) return;
    old = std::move(it->second);
    links_.erase(it);
  }
  old->Stop();
}

PeerCounters GrpcTransport::Counters(NodeId peer) const {
  std::shared_ptr<PeerLink> link;
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(peer);
    if (it == links_.end()) return {};
    link = it->second;
  }
  return link->counters();
}

uint64_t GrpcTransport::unknown_peer_drops() const {
  std::lock_guard lock(mu_);
  return unknown_peer_drops_;
}

}  // namespace synod::transport
