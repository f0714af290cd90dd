// The Watch service of a Server: a WatchHub over the member's store, woken by its revision
// feed (server/watch_hub.h has the design).
#include <memory>

#include "server/server.h"
#include "server/services.h"
#include "server/watch_hub.h"

namespace synod::server {

std::unique_ptr<grpc::Service> MakeWatchService(Server* server) {
  WatchHubOptions options;
  // etcd cuts fragments at --max-request-bytes.
  options.fragment_bytes_max = server->config().max_request_bytes;
  auto hub = std::make_shared<WatchHub>(
      &server->store(),
      [server](etcdserverpb::ResponseHeader* header) { server->FillHeader(header); }, options);
  RevisionFeed* feed = &server->revisions();
  // The listener runs on the apply thread: Notify only sets a flag and wakes the hub.
  const uint64_t subscription =
      feed->Subscribe([hub = hub.get()](int64_t revision) { hub->Notify(revision); });
  // Streams of clients that require a leader end once this member has long had none.
  server->OnNoLeader([weak = std::weak_ptr<WatchHub>(hub)] {
    if (auto h = weak.lock()) {
      h->EndStreamsRequiringLeader(grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
    }
  });
  return MakeWatchService(
      std::move(hub), [server] { return server->HasLeader(); },
      [feed, subscription] { feed->Unsubscribe(subscription); });
}

}  // namespace synod::server
