// The receiving side of member-to-member traffic: the synod.v1.Peer service and a
// server that listens on the peer port.
//
// Every envelope received is handed to `deliver` (the node's Receive, which only
// queues), on the gRPC thread serving that stream: one thread per connected peer, so
// callbacks may run concurrently and must be thread-safe.
//
// What gRPC gives us and we rely on: a connection that sends malformed bytes (not
// HTTP/2, or a PeerBatch that does not parse) is closed alone, the other streams carry
// on; the listening socket has SO_REUSEADDR, so a restarted member binds its port again
// at once even with old connections in TIME_WAIT. We turn off gRPC's default
// SO_REUSEPORT, so a port already in use is an error rather than shared.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "base/status.h"
#include "runtime/node.h"
#include "synod/peer.grpc.pb.h"

namespace synod::transport {

namespace pb = ::synod::consensuspb;

class PeerService final : public ::synod::v1::Peer::Service {
 public:
  using Deliver = std::function<void(pb::Envelope)>;
  // `self`: envelopes addressed to anyone else are dropped and counted (a peer with a
  // wrong address map); kNoNode accepts every envelope.
  PeerService(consensus::NodeId self, Deliver deliver)
      : self_(self), deliver_(std::move(deliver)) {}

  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReader<::synod::v1::PeerBatch>* reader,
                      ::synod::v1::StreamAck* ack) override;

  uint64_t streams() const { return streams_; }      // streams accepted so far
  uint64_t envelopes() const { return envelopes_; }  // envelopes delivered so far
  uint64_t misdirected() const { return misdirected_; }

 private:
  const consensus::NodeId self_;
  Deliver deliver_;
  std::atomic<uint64_t> streams_{0};
  std::atomic<uint64_t> envelopes_{0};
  std::atomic<uint64_t> misdirected_{0};
};

struct PeerServerOptions {
  consensus::NodeId self = consensus::kNoNode;  // see PeerService
  std::string address;  // "host:port"; port 0 picks a free one (see PeerServer::port)
  // Largest batch accepted; must exceed the senders' batch_bytes_max and
  // envelope_bytes_max (GrpcTransportOptions).
  int message_bytes_max = 64 << 20;
  // Senders' keep-alive pings are accepted this often (GrpcTransportOptions::
  // keepalive_interval must not be shorter).
  std::chrono::milliseconds ping_interval_min{1000};
  // More services served on the same port (the server's member-to-member calls). Not
  // owned: they must outlive the PeerServer.
  std::vector<grpc::Service*> extra_services;
};

// A gRPC server on the peer port with the Peer service.
class PeerServer {
 public:
  static Status Start(const PeerServerOptions& options, PeerService::Deliver deliver,
                      std::unique_ptr<PeerServer>* server);
  // Closes every stream at once and stops listening.
  ~PeerServer();
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  int port() const { return port_; }
  const PeerService& service() const { return service_; }

  // Applies the options' keep-alive and size limits to a builder, for a server that
  // hosts the Peer service beside others.
  static void Configure(const PeerServerOptions& options, grpc::ServerBuilder* builder);

 private:
  PeerServer(consensus::NodeId self, PeerService::Deliver deliver)
      : service_(self, std::move(deliver)) {}

  PeerService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace synod::transport
