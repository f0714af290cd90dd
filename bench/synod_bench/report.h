// The end-of-run report: a human summary, or one JSON object for machines.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "histogram.h"
#include "options.h"

namespace synod::bench {

struct Result {
  const Options* opts = nullptr;
  std::string unit = "ops";  // what the primary histogram counts ("events" for watch)
  Nanos elapsed{0};
  Histogram primary;
  std::map<std::string, Histogram> phases;
  std::map<std::string, int64_t> errors;  // by gRPC status code name
  std::map<std::string, int64_t> counters;
  std::string problem;  // a correctness problem the workload found, "" if none
  bool interrupted = false;
};

void PrintText(std::FILE* out, const Result& r);
// One line: {"workload":..., "throughput_ops_s":..., "latency_ms":{"p50":...}, ...}.
void PrintJson(std::FILE* out, const Result& r);

std::string JsonString(const std::string& s);
std::string JsonNumber(double v);

}  // namespace synod::bench
