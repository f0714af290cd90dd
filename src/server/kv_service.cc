// etcd's KV service: Range, Put, DeleteRange, Txn, Compact.
#include "synod/kv.pb.h"

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

namespace {

namespace epb = ::etcdserverpb;

// Which field of kvpb::Request / kvpb::Response a KV call uses.
template <typename EtcdRequest>
struct KvCall;

#define SYNOD_KV_CALL(EtcdReq, EtcdResp, SynodReq, field)          \
  template <>                                                      \
  struct KvCall<epb::EtcdReq> {                                    \
    using Response = epb::EtcdResp;                                \
    static void Wrap(const epb::EtcdReq& in, kvpb::Request* out) { \
      *out->mutable_##field() = Convert<kvpb::SynodReq>(in);       \
    }                                                              \
    static void Unwrap(const kvpb::Response& in, Response* out) {  \
      out->ParseFromString(in.field().SerializeAsString());        \
    }                                                              \
  };
SYNOD_KV_CALL(RangeRequest, RangeResponse, RangeRequest, range)
SYNOD_KV_CALL(PutRequest, PutResponse, PutRequest, put)
SYNOD_KV_CALL(DeleteRangeRequest, DeleteRangeResponse, DeleteRangeRequest, delete_range)
SYNOD_KV_CALL(TxnRequest, TxnResponse, TxnRequest, txn)
SYNOD_KV_CALL(CompactionRequest, CompactionResponse, CompactionRequest, compaction)
#undef SYNOD_KV_CALL

class KvService final : public epb::KV::CallbackService {
 public:
  explicit KvService(Server* server) : server_(server) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const epb::RangeRequest* request,
                                  epb::RangeResponse* response) override {
    return Serve(context, *request, response);
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context,
                                const epb::PutRequest* request,
                                epb::PutResponse* response) override {
    return Serve(context, *request, response);
  }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const epb::DeleteRangeRequest* request,
                                        epb::DeleteRangeResponse* response) override {
    return Serve(context, *request, response);
  }
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context,
                                const epb::TxnRequest* request,
                                epb::TxnResponse* response) override {
    return Serve(context, *request, response);
  }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const epb::CompactionRequest* request,
                                    epb::CompactionResponse* response) override {
    return Serve(context, *request, response);
  }

 private:
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, const Request& request,
                                  Response* response) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    kvpb::Request wrapped;
    KvCall<Request>::Wrap(request, &wrapped);
    server_->Serve(std::move(wrapped), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ToGrpcStatus(outcome));
        return;
      }
      KvCall<Request>::Unwrap(outcome.response(), response);
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  Server* server_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeKvService(Server* server) {
  return std::make_unique<KvService>(server);
}

}  // namespace synod::server
