// etcd's Maintenance service: Status, Alarm, Hash, HashKV, Snapshot, MoveLeader, Defragment.
//
// What differs from etcd, and why:
//   - Status.version is "3.4.0": the etcd API version synod implements (clients decide
//     which calls they may make from it), not a synod release.
//   - Hash and HashKV: a CRC32C over every live key-value at one revision (see HashAt),
//     where etcd hashes its bbolt file (Hash) or every version in its history (HashKV). The
//     numbers are not etcd's, but members that hold the same data agree on them.
//   - Snapshot streams the store's own snapshot format (docs/kv.md), not a bbolt file; it is
//     framed as etcd's (zero padding to 512 bytes, then a SHA-256), so `etcdctl snapshot save`
//     stores and checks it, but `etcdctl snapshot status` and `snapshot restore` cannot read it.
//   - Defragment compacts RocksDB's files (Store::Defragment); dbSizeInUse equals dbSize.
//
// Nothing here blocks a gRPC thread or the apply thread for long: hashing, writing a snapshot
// and defragmenting run on the service's own threads, a leader transfer is watched from a
// timer, and a snapshot is streamed one chunk at a time as the client takes it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

#include <openssl/evp.h>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "kv/errors.h"
#include "kv/snapshot.h"
#include "server/log.h"
#include "server/server.h"
#include "server/server_internal.h"
#include "server/services.h"

namespace synod::server {

namespace {

namespace epb = ::etcdserverpb;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The etcd API version synod implements (StatusResponse.version).
constexpr char kApiVersion[] = "3.4.0";

// etcd's errors (api/v3rpc/rpctypes, etcdserver/errors.go).
constexpr char kNotLeader[] = "etcdserver: not leader";
constexpr char kBadLeaderTransferee[] = "etcdserver: bad leader transferee";
constexpr char kLeaderTransferTimeout[] =
    "etcdserver: request timed out, leader transfer took too long";
constexpr char kNoLeaderError[] = "etcdserver: no leader";
constexpr char kTooManyRequests[] = "etcdserver: too many requests";
constexpr char kServerStopped[] = "etcdserver: server stopped";

// Snapshot streaming: the size of one message, and how many snapshots may be in progress
// at once (each is a full copy of the store on disk until it has been sent).
constexpr size_t kSnapshotChunkBytes = 1 << 20;
constexpr int kSnapshotsInProgressMax = 2;
constexpr char kSnapshotFilePrefix[] = "tmp-snapshot-";

// Hashing reads the store in pages of keys: at least this many keys a page, and the whole
// store in at most about this many pages (a Range also counts the rest of its range, so a
// page costs a walk over the keys after it: few pages keep the work linear, while a page
// holds at most 1/64 of the keys in memory).
constexpr int64_t kHashPageKeysMin = 100;
constexpr int64_t kHashPagesMax = 64;

// A leader transfer is given this many election timeouts to complete.
constexpr int kLeaderTransferElectionTimeouts = 3;

grpc::Status ErrorStatus(grpc::StatusCode code, const std::string& message) {
  return grpc::Status(code, message);
}

struct HashResult {
  uint32_t hash = 0;
  int64_t compact_revision = -1;
};

// The hash of the store at `revision` (<= 0: the current one): CRC32C over every live key
// in key order, each as len(key) key len(value) value create_revision mod_revision version
// lease (lengths and numbers 8 bytes little-endian). Stops early (kUnavailable) once
// `cancelled` says so.
Result<HashResult> HashAt(kv::Store& store, int64_t revision,
                          const std::function<bool()>& cancelled) {
  HashResult result;
  result.compact_revision = store.CompactRevision();
  // etcd's HashByRev refuses the compaction revision itself; a read at it would work here.
  if (revision > 0 && revision <= result.compact_revision) return kv::ErrCompacted();
  const int64_t at = revision > 0 ? revision : store.Revision();

  kvpb::RangeRequest page;
  page.set_key(std::string(1, '\0'));  // with range_end "\0": every key
  page.set_range_end(std::string(1, '\0'));
  page.set_revision(at);
  page.set_limit(kHashPageKeysMin);
  uint32_t crc = 0;
  bool first_page = true;
  for (;;) {
    if (cancelled()) return Status(Code::kUnavailable, "cancelled");
    auto r = store.Range(page);
    if (!r.ok()) return r.status();
    const kvpb::RangeResponse& response = r.value();
    for (const auto& item : response.kvs()) crc = kv::Store::ExtendKeyValueHash(crc, item);
    if (!response.more() || response.kvs().empty()) break;
    page.set_key(response.kvs(response.kvs_size() - 1).key() + std::string(1, '\0'));
    if (first_page) {
      // The first page counted every key at `at`: size the pages from it.
      page.set_limit(std::max(kHashPageKeysMin, response.count() / kHashPagesMax));
      first_page = false;
    }
  }
  result.hash = crc;
  return result;
}

// A snapshot's bytes go to a temporary file (no fsync: it only lives until it is sent), laid
// out as etcd's snapshot stream is: the data, zeros up to a multiple of 512 bytes, then the
// SHA-256 of both (`etcdctl snapshot save` refuses a stream of any other length). Writing
// stops with an error once `cancelled` is set.
class TempFileSink final : public kv::SnapshotSink {
 public:
  TempFileSink(std::string path, const std::atomic<bool>* cancelled)
      : path_(std::move(path)), cancelled_(cancelled), sha_(EVP_MD_CTX_new()) {}
  ~TempFileSink() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  Status Write(std::string_view bytes) override {
    if (cancelled_->load()) return Status(Code::kUnavailable, "snapshot cancelled");
    if (file_ == nullptr) {
      file_ = std::fopen(path_.c_str(), "wb");
      if (file_ == nullptr) return Status(Code::kIoError, "cannot create " + path_);
      if (sha_ == nullptr || EVP_DigestInit_ex(sha_.get(), EVP_sha256(), nullptr) != 1) {
        return Status(Code::kIoError, "cannot compute SHA-256");
      }
    }
    return Append(bytes, /*hash=*/true);
  }

  Status Finish() override {
    if (file_ == nullptr) return Status(Code::kIoError, "empty snapshot");
    const std::string padding((kPaddingBytes - bytes_ % kPaddingBytes) % kPaddingBytes, '\0');
    if (Status s = Append(padding, /*hash=*/true); !s.ok()) return s;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_bytes = 0;
    if (EVP_DigestFinal_ex(sha_.get(), digest, &digest_bytes) != 1) {
      return Status(Code::kIoError, "cannot compute SHA-256");
    }
    if (Status s = Append(std::string_view(reinterpret_cast<const char*>(digest), digest_bytes),
                          /*hash=*/false);
        !s.ok()) {
      return s;
    }
    const bool ok = std::fclose(file_) == 0;
    file_ = nullptr;
    return ok ? Status::Ok() : Status(Code::kIoError, "cannot write " + path_);
  }

 private:
  static constexpr uint64_t kPaddingBytes = 512;

  Status Append(std::string_view bytes, bool hash) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
      return Status(Code::kIoError, "cannot write " + path_);
    }
    if (hash && EVP_DigestUpdate(sha_.get(), bytes.data(), bytes.size()) != 1) {
      return Status(Code::kIoError, "cannot compute SHA-256");
    }
    bytes_ += bytes.size();
    return Status::Ok();
  }

  struct ShaDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };

  std::string path_;
  const std::atomic<bool>* cancelled_;
  std::unique_ptr<EVP_MD_CTX, ShaDeleter> sha_;
  std::FILE* file_ = nullptr;
  uint64_t bytes_ = 0;
};

class MaintenanceService;

// One Snapshot call: the store is written to a temporary file on the service's snapshot
// thread, then sent in chunks, one write in flight (OnWriteDone sends the next). The file
// is removed when the call is done, however it ends.
class SnapshotReactor final : public grpc::ServerWriteReactor<epb::SnapshotResponse> {
 public:
  SnapshotReactor(Server* server, std::atomic<int>* in_progress, std::string path)
      : server_(server), in_progress_(in_progress), path_(std::move(path)) {}

  // On the snapshot thread.
  void WriteFile() {
    TempFileSink sink(path_, &cancelled_);
    auto info = server_->store().WriteSnapshot(sink);
    if (cancelled_.load()) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    if (!info.ok()) {
      LogError("snapshot for a client failed: " + info.status().message());
      Finish(ErrorStatus(grpc::StatusCode::UNKNOWN, info.status().message()));
      return;
    }
    std::error_code ec;
    total_ = fs::file_size(path_, ec);
    file_ = ec ? nullptr : std::fopen(path_.c_str(), "rb");
    if (file_ == nullptr) {
      Finish(ErrorStatus(grpc::StatusCode::UNKNOWN, "cannot read the snapshot file " + path_));
      return;
    }
    LogInfo("sending a snapshot at revision " + std::to_string(info.value().revision) + " (" +
            std::to_string(total_) + " bytes) to a client");
    // The first message carries the header, at the snapshot's revision.
    response_.mutable_header()->set_revision(info.value().revision);
    server_->FillHeader(response_.mutable_header());
    SendNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The client went away (or the call was cancelled): nothing more can be sent.
      Finish(grpc::Status::CANCELLED);
      return;
    }
    if (sent_ == total_) {
      LogInfo("sent a snapshot (" + std::to_string(total_) + " bytes) to a client");
      Finish(grpc::Status::OK);
      return;
    }
    response_.clear_header();
    SendNext();
  }

  void OnCancel() override { cancelled_.store(true); }

  void OnDone() override {
    if (file_ != nullptr) std::fclose(file_);
    std::error_code ec;
    fs::remove(path_, ec);
    in_progress_->fetch_sub(1);
    delete this;
  }

 private:
  void SendNext() {
    std::string* blob = response_.mutable_blob();
    blob->resize(static_cast<size_t>(std::min<uint64_t>(kSnapshotChunkBytes, total_ - sent_)));
    const size_t n = std::fread(blob->data(), 1, blob->size(), file_);
    if (n != blob->size()) {
      Finish(ErrorStatus(grpc::StatusCode::UNKNOWN, "cannot read the snapshot file " + path_));
      return;
    }
    sent_ += n;
    response_.set_remaining_bytes(total_ - sent_);
    StartWrite(&response_);
  }

  Server* server_;
  std::atomic<int>* in_progress_;
  const std::string path_;
  std::atomic<bool> cancelled_{false};
  std::FILE* file_ = nullptr;
  uint64_t total_ = 0;
  uint64_t sent_ = 0;
  epb::SnapshotResponse response_;  // the message being written
};

class MaintenanceService final : public epb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(Server* server)
      : server_(server), member_dir_(server->config().data_dir + "/member") {
    RemoveStaleSnapshots();
  }

  ~MaintenanceService() override { stopping_.store(true); }

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const epb::StatusRequest* /*request*/,
                                   epb::StatusResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const runtime::NodeStatus status = server_->node_status();
    kv::Store& store = server_->store();
    server_->FillHeader(response->mutable_header());
    response->set_version(kApiVersion);
    const auto size = static_cast<int64_t>(store.SizeBytes());
    response->set_dbsize(size);
    response->set_dbsizeinuse(size);
    response->set_leader(status.engine.leader);
    response->set_raftindex(status.engine.commit);
    response->set_raftterm(status.engine.term);
    response->set_raftappliedindex(status.applied);
    const serverpb::Membership membership = server_->membership();
    for (const auto& member : membership.members()) {
      if (member.id() == server_->member_id()) response->set_islearner(member.is_learner());
    }
    if (status.engine.leader == 0) response->add_errors(kNoLeaderError);
    for (const auto& alarm : store.Alarms()) {
      // etcd prints the AlarmMember message in protobuf's compact text form.
      response->add_errors("memberID:" + std::to_string(alarm.memberid()) +
                           " alarm:" + kvpb::AlarmType_Name(alarm.alarm()) + " ");
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* context,
                                  const epb::AlarmRequest* request,
                                  epb::AlarmResponse* response) override {
    // Every action goes through the log, as etcd's: alarms are replicated state.
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    kvpb::Request wrapped;
    *wrapped.mutable_alarm() = Convert<kvpb::AlarmRequest>(*request);
    server_->Serve(std::move(wrapped), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ToGrpcStatus(outcome));
        return;
      }
      response->ParseFromString(outcome.response().alarm().SerializeAsString());
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* context,
                                 const epb::HashRequest* /*request*/,
                                 epb::HashResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    HashThenAnswer(context, reactor, 0, [response](const HashResult& h) {
      response->set_hash(h.hash);
      return response->mutable_header();
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* context,
                                   const epb::HashKVRequest* request,
                                   epb::HashKVResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    HashThenAnswer(context, reactor, request->revision(), [response](const HashResult& h) {
      response->set_hash(h.hash);
      response->set_compact_revision(h.compact_revision);
      return response->mutable_header();
    });
    return reactor;
  }

  grpc::ServerWriteReactor<epb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext* /*context*/, const epb::SnapshotRequest* /*request*/) override {
    const uint64_t n = next_snapshot_.fetch_add(1);
    auto* reactor = new SnapshotReactor(
        server_, &snapshots_, member_dir_ + "/" + kSnapshotFilePrefix + std::to_string(n));
    if (snapshots_.fetch_add(1) >= kSnapshotsInProgressMax) {
      reactor->Finish(ErrorStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, kTooManyRequests));
      return reactor;
    }
    snapshot_writer_.Run([reactor] { reactor->WriteFile(); });
    return reactor;
  }

  grpc::ServerUnaryReactor* MoveLeader(grpc::CallbackServerContext* context,
                                       const epb::MoveLeaderRequest* request,
                                       epb::MoveLeaderResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const runtime::NodeStatus status = server_->node_status();
    const uint64_t self = server_->member_id();
    if (status.engine.role != consensus::Role::kLeader || status.engine.leader != self) {
      reactor->Finish(ErrorStatus(grpc::StatusCode::FAILED_PRECONDITION, kNotLeader));
      return reactor;
    }
    const uint64_t target = request->targetid();
    bool voter = false;
    const serverpb::Membership membership = server_->membership();
    for (const auto& member : membership.members()) {
      if (member.id() == target) voter = !member.is_learner();
    }
    if (!voter) {
      reactor->Finish(ErrorStatus(grpc::StatusCode::FAILED_PRECONDITION, kBadLeaderTransferee));
      return reactor;
    }
    if (target == self) {
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    LogInfo("leadership transfer from " + MemberIdHex(self) + " to " + MemberIdHex(target) +
            " starting");
    server_->TransferLeader(target);
    const auto deadline =
        Clock::now() + kLeaderTransferElectionTimeouts *
                           std::chrono::milliseconds(server_->config().election_timeout_ms);
    WatchTransfer(context, reactor, response, target, deadline);
    return reactor;
  }

  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext* context,
                                       const epb::DefragmentRequest* /*request*/,
                                       epb::DefragmentResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    chores_.Run([this, reactor, response] {
      LogInfo("defragmenting the store");
      const synod::Status s = server_->store().Defragment();
      if (!s.ok()) {
        LogWarn("defragmenting failed: " + s.message());
        reactor->Finish(ToGrpcStatus(OutcomeOf(s)));
        return;
      }
      LogInfo("finished defragmenting the store");
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  // Removes the snapshot files a previous run left behind (it stopped while sending them).
  void RemoveStaleSnapshots() {
    std::error_code ec;
    for (fs::directory_iterator it(member_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().filename().string().starts_with(kSnapshotFilePrefix)) {
        std::error_code ignored;
        fs::remove(it->path(), ignored);
      }
    }
  }

  // Hashes on the chores thread, after a read barrier if the revision asked for is the
  // latest or not here yet (then the hash covers every write acknowledged before the call,
  // and a future revision the cluster has reached is not refused); `fill` puts the result
  // in the response and returns its header.
  template <typename Fill>
  void HashThenAnswer(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
                      int64_t revision, Fill fill) {
    auto hash = [this, context, reactor, revision, fill](serverpb::Outcome barrier) {
      if (barrier.grpc_code() != 0) {
        reactor->Finish(ToGrpcStatus(barrier));
        return;
      }
      chores_.Run([this, context, reactor, revision, fill] {
        auto h = HashAt(server_->store(), revision,
                        [this, context] { return stopping_.load() || context->IsCancelled(); });
        if (!h.ok()) {
          reactor->Finish(h.status().code() == Code::kUnavailable
                              ? grpc::Status::CANCELLED
                              : ToGrpcStatus(OutcomeOf(h.status())));
          return;
        }
        server_->FillHeader(fill(h.value()));
        reactor->Finish(grpc::Status::OK);
      });
    };
    if (revision <= 0 || revision > server_->store().Revision()) {
      server_->ReadBarrier(std::move(hash));
    } else {
      hash(serverpb::Outcome());
    }
  }

  // Checks every heartbeat whether `target` leads (etcd polls every tick too).
  void WatchTransfer(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
                     epb::MoveLeaderResponse* response, uint64_t target,
                     Clock::time_point deadline) {
    const auto period = std::chrono::milliseconds(server_->config().heartbeat_interval_ms);
    timers_.After(period, [this, context, reactor, response, target, deadline] {
      if (stopping_.load()) {
        reactor->Finish(ErrorStatus(grpc::StatusCode::UNAVAILABLE, kServerStopped));
      } else if (server_->node_status().engine.leader == target) {
        LogInfo("leadership transfer to " + MemberIdHex(target) + " finished");
        server_->FillHeader(response->mutable_header());
        reactor->Finish(grpc::Status::OK);
      } else if (context->IsCancelled()) {
        reactor->Finish(grpc::Status::CANCELLED);
      } else if (Clock::now() >= deadline) {
        LogWarn("leadership transfer to " + MemberIdHex(target) + " took too long");
        // etcd has no gRPC code for this error: it goes out as UNKNOWN.
        reactor->Finish(ErrorStatus(grpc::StatusCode::UNKNOWN, kLeaderTransferTimeout));
      } else {
        WatchTransfer(context, reactor, response, target, deadline);
      }
    });
  }

  Server* server_;
  const std::string member_dir_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_snapshot_{0};
  std::atomic<int> snapshots_{0};  // in progress (being written or sent)
  // Last, so that they stop first: work still queued runs (and answers) before the rest
  // of the service goes.
  Executor snapshot_writer_{1};  // writes snapshot files
  Executor chores_{1};           // hashes, defragments
  Timers timers_;                // watches leader transfers
};

}  // namespace

std::unique_ptr<grpc::Service> MakeMaintenanceService(Server* server) {
  return std::make_unique<MaintenanceService>(server);
}

}  // namespace synod::server
