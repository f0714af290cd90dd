// GrpcTransport: the runtime's Transport over gRPC, one long-lived stream per peer.
//
// Contract (runtime/node.h): Send is best effort and asynchronous. It never blocks the
// caller (the node's loop thread) on the network: it copies the envelope into the
// peer's bounded queue and returns. When the queue is full the *oldest* envelope goes:
// the newest messages carry the newest state, and the engines retry whatever is lost.
// Every loss is counted.
//
// Per peer, one sender thread owns one channel (its own TCP connection) and one client
// stream of synod.v1.Peer/Stream. It writes everything queued since its previous write
// as one PeerBatch (up to batch_bytes_max), so a busy leader pays one write per batch,
// not per message. Peers are independent: a peer that is slow, down or receiving a
// large snapshot chunk holds up only its own queue, never another peer's heartbeats.
//
// A stream that breaks: the envelopes of the write that failed are queued again, once,
// and whatever the peer had not read is lost; the sender waits (exponential
// back-off from backoff_initial to backoff_max, reset by a successful write), reconnects
// and carries on with what is queued. The channel's own reconnect back-off is bounded
// by the same limits, so a restarted peer is reached again within about backoff_max.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/node.h"

namespace synod::transport {

using consensus::NodeId;
namespace pb = ::synod::consensuspb;

struct GrpcTransportOptions {
  NodeId self = consensus::kNoNode;     // written into every batch
  std::map<NodeId, std::string> peers;  // "host:port" of each peer (self, if listed, is skipped)

  // Bounds of each peer's queue; past either, the oldest envelopes are dropped.
  size_t queue_envelopes_max = 4096;
  size_t queue_bytes_max = 64 << 20;
  // Envelopes written in one batch: up to this many bytes (a larger envelope alone).
  size_t batch_bytes_max = 1 << 20;
  // An envelope above batch_bytes_max is split by message; one message above this is
  // dropped (the receiver's PeerServerOptions::message_bytes_max must exceed it).
  size_t envelope_bytes_max = 32 << 20;

  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{1000};
  // How long one connection attempt may take before the sender backs off.
  std::chrono::milliseconds connect_timeout{1000};
  // HTTP/2 pings on an idle or stuck connection find a dead peer (a partition sends no
  // RST) and fail the stream. The peer's server must allow pings this often.
  std::chrono::milliseconds keepalive_interval{5000};
  std::chrono::milliseconds keepalive_timeout{5000};
};

struct PeerCounters {
  uint64_t enqueued = 0;        // envelopes accepted by Send
  uint64_t sent = 0;            // envelopes written to a stream
  uint64_t batches = 0;         // writes
  uint64_t dropped_full = 0;    // oldest envelopes dropped from a full queue
  uint64_t requeued = 0;        // envelopes of a failed write, queued again (once)
  uint64_t dropped_broken = 0;  // envelopes in a second failed write
  uint64_t dropped_too_large = 0;
  uint64_t streams = 0;           // streams opened
  uint64_t connect_failures = 0;  // attempts that found no connection within connect_timeout
  uint64_t stream_failures = 0;   // streams that broke
  size_t queued = 0;              // envelopes waiting now
  size_t queued_bytes = 0;
  bool connected = false;  // a stream is open now
  std::string last_error;  // why the last stream ended, if it failed

  uint64_t dropped() const { return dropped_full + dropped_broken + dropped_too_large; }
};

class GrpcTransport final : public runtime::Transport {
 public:
  // Starts one sender per peer; connections are made in the background.
  explicit GrpcTransport(GrpcTransportOptions options);
  ~GrpcTransport() override;  // stops the senders; queued envelopes are dropped
  GrpcTransport(const GrpcTransport&) = delete;
  GrpcTransport& operator=(const GrpcTransport&) = delete;

  // Thread-safe; never waits for the network.
  void Send(pb::Envelope envelope) override;

  // Membership changes: adds a peer, or moves it to a new address (its queue is lost).
  void SetPeer(NodeId id, const std::string& address);
  void RemovePeer(NodeId id);

  PeerCounters Counters(NodeId peer) const;  // zeros for an unknown peer
  uint64_t unknown_peer_drops() const;       // envelopes for a peer with no address

 private:
  class PeerLink;

  const GrpcTransportOptions options_;
  mutable std::mutex mu_;
  std::map<NodeId, std::shared_ptr<PeerLink>> links_;
  uint64_t unknown_peer_drops_ = 0;
};

}  // namespace synod::transport
