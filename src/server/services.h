// The client API: etcd's v3 gRPC services over a Server, and what they share.
//
// Every service uses gRPC's callback API: a request is a reactor that finishes when the
// server's callback answers, so no thread waits on a commit, a read barrier or a lock.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>

#include "server/server.h"

namespace synod::server {

class Server;

std::unique_ptr<grpc::Service> MakeKvService(Server* server);           // kv_service.cc
std::unique_ptr<grpc::Service> MakeWatchService(Server* server);        // watch_service.cc
std::unique_ptr<grpc::Service> MakeLeaseService(Server* server);        // lease_service.cc
std::unique_ptr<grpc::Service> MakeClusterService(Server* server);      // cluster_service.cc
std::unique_ptr<grpc::Service> MakeMaintenanceService(Server* server);  // maintenance_service.cc
std::unique_ptr<grpc::Service> MakeLockService(Server* server);         // lock_service.cc
std::unique_ptr<grpc::Service> MakeElectionService(Server* server);     // election_service.cc

// synod's messages mirror etcd's field for field (proto/synod/kv.proto): converting is
// re-reading the bytes.
template <typename To, typename From>
To Convert(const From& from) {
  To to;
  to.ParseFromString(from.SerializeAsString());
  return to;
}

grpc::Status ToGrpcStatus(const serverpb::Outcome& outcome);
// An Outcome carrying an error: `code` is a grpc::StatusCode.
serverpb::Outcome ErrorOutcome(grpc::StatusCode code, std::string message);
// The Outcome of a synod Status (etcd's errors keep their gRPC code, kv/errors.h).
serverpb::Outcome OutcomeOf(const Status& status);

}  // namespace synod::server
