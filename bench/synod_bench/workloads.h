// The workload factories (one file per family) and helpers they share.
#pragma once

#include <memory>

#include "workload.h"

namespace synod::bench {

std::unique_ptr<Workload> MakePutWorkload(Env& env);
std::unique_ptr<Workload> MakeRangeWorkload(Env& env);
std::unique_ptr<Workload> MakeMixedWorkload(Env& env);
std::unique_ptr<Workload> MakeTxnPutWorkload(Env& env);
std::unique_ptr<Workload> MakeTxnMixedWorkload(Env& env);
std::unique_ptr<Workload> MakeWatchWorkload(Env& env);
std::unique_ptr<Workload> MakeLockWorkload(Env& env);
std::unique_ptr<Workload> MakeLeaseWorkload(Env& env);

// Puts keys 0..count-1 of `keys` with `value`, with up to --clients clients, before the
// measured run; reports on stderr.
grpc::Status Preload(Env& env, const KeySpace& keys, int64_t count, const std::string& value);

}  // namespace synod::bench
