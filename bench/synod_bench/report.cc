#include "report.h"

#include <cmath>

namespace synod::bench {
namespace {

constexpr std::pair<const char*, double> kPercentiles[] = {
    {"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}};

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

double Seconds(Nanos d) { return static_cast<double>(d.count()) / 1e9; }

double Rate(uint64_t count, Nanos elapsed) {
  return elapsed.count() > 0 ? static_cast<double>(count) / Seconds(elapsed) : 0.0;
}

std::string LatencyLine(const Histogram& h) {
  std::string line;
  char buf[64];
  for (const auto& [name, p] : kPercentiles) {
    std::snprintf(buf, sizeof(buf), "%s %.3f  ", name, Ms(h.Percentile(p)));
    line += buf;
  }
  std::snprintf(buf, sizeof(buf), "max %.3f  mean %.3f ms", Ms(h.max()), h.mean() / 1e6);
  return line + buf;
}

std::string LatencyJson(const Histogram& h) {
  std::string s = "{";
  for (const auto& [name, p] : kPercentiles) {
    s += JsonString(name) + ":" + JsonNumber(Ms(h.Percentile(p))) + ",";
  }
  s += "\"max\":" + JsonNumber(Ms(h.max())) + ",\"mean\":" + JsonNumber(h.mean() / 1e6) +
       ",\"min\":" + JsonNumber(Ms(h.min())) + "}";
  return s;
}

std::string CountsJson(const std::map<std::string, int64_t>& m) {
  std::string s = "{";
  for (const auto& [k, v] : m) {
    if (s.size() > 1) s += ",";
    s += JsonString(k) + ":" + JsonNumber(static_cast<double>(v));
  }
  return s + "}";
}

std::string Mode(const Options& o) {
  if (o.rate <= 0) return "closed loop";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "open loop at %g ops/s", o.rate);
  return buf;
}

int64_t ErrorTotal(const Result& r) {
  int64_t n = 0;
  for (const auto& [code, count] : r.errors) n += count;
  return n;
}

}  // namespace

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
    return buf;
  }
  std::snprintf(buf, sizeof(buf), "%.6f", v);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

void PrintText(std::FILE* out, const Result& r) {
  const Options& o = *r.opts;
  std::fprintf(out, "synod-bench %s: %d clients on %d connections to %zu endpoint(s), %s%s\n",
               o.workload.c_str(), o.clients, o.conns, o.endpoints.size(), Mode(o).c_str(),
               r.interrupted ? " (interrupted)" : "");
  std::fprintf(out, "  elapsed     %.2f s\n", Seconds(r.elapsed));
  std::fprintf(out, "  %-11s %llu ok, %lld errors\n", r.unit.c_str(),
               static_cast<unsigned long long>(r.primary.count()),
               static_cast<long long>(ErrorTotal(r)));
  std::fprintf(out, "  throughput  %.1f %s/s\n", Rate(r.primary.count(), r.elapsed),
               r.unit.c_str());
  std::fprintf(out, "  latency ms  %s\n", LatencyLine(r.primary).c_str());
  for (const auto& [name, h] : r.phases) {
    std::fprintf(out, "  %-11s %llu in %.1f/s; ms %s\n", name.c_str(),
                 static_cast<unsigned long long>(h.count()), Rate(h.count(), r.elapsed),
                 LatencyLine(h).c_str());
  }
  if (!r.counters.empty()) {
    std::fprintf(out, "  counters   ");
    for (const auto& [k, v] : r.counters) std::fprintf(out, " %s=%lld", k.c_str(), (long long)v);
    std::fprintf(out, "\n");
  }
  if (!r.errors.empty()) {
    std::fprintf(out, "  errors     ");
    for (const auto& [k, v] : r.errors) std::fprintf(out, " %s=%lld", k.c_str(), (long long)v);
    std::fprintf(out, "\n");
  }
  // The schedule paces the operations: for watch, the puts.
  const auto puts = r.phases.find("put");
  const uint64_t scheduled_done =
      (o.workload == "watch" && puts != r.phases.end() ? puts->second.count() : r.primary.count()) +
      static_cast<uint64_t>(ErrorTotal(r));
  if (o.rate > 0 && Rate(scheduled_done, r.elapsed) < 0.95 * o.rate) {
    std::fprintf(out,
                 "  note        the target did not keep up with --rate %g: the run overran its "
                 "schedule and latency includes the queueing\n",
                 o.rate);
  }
  if (!r.problem.empty()) std::fprintf(out, "  PROBLEM     %s\n", r.problem.c_str());
}

void PrintJson(std::FILE* out, const Result& r) {
  const Options& o = *r.opts;
  std::string s = "{";
  s += "\"workload\":" + JsonString(o.workload);
  s += ",\"mode\":" + JsonString(o.rate > 0 ? "open" : "closed");
  s += ",\"unit\":" + JsonString(r.unit);
  s += ",\"elapsed_s\":" + JsonNumber(Seconds(r.elapsed));
  s += ",\"ops\":" + JsonNumber(static_cast<double>(r.primary.count()));
  s += ",\"errors_total\":" + JsonNumber(static_cast<double>(ErrorTotal(r)));
  s += ",\"throughput_ops_s\":" + JsonNumber(Rate(r.primary.count(), r.elapsed));
  s += ",\"latency_ms\":" + LatencyJson(r.primary);
  s += ",\"phases\":{";
  bool first = true;
  for (const auto& [name, h] : r.phases) {
    if (!first) s += ",";
    first = false;
    s += JsonString(name) + ":{\"ops\":" + JsonNumber(static_cast<double>(h.count())) +
         ",\"throughput_ops_s\":" + JsonNumber(Rate(h.count(), r.elapsed)) +
         ",\"latency_ms\":" + LatencyJson(h) + "}";
  }
  s += "}";
  s += ",\"errors\":" + CountsJson(r.errors);
  s += ",\"counters\":" + CountsJson(r.counters);
  s += ",\"problem\":" + (r.problem.empty() ? std::string("null") : JsonString(r.problem));
  s += ",\"interrupted\":" + std::string(r.interrupted ? "true" : "false");
  s += ",\"flags\":{";
  first = true;
  for (const auto& [k, v] : o.AsJsonFields()) {
    if (!first) s += ",";
    first = false;
    s += JsonString(k) + ":" + v;
  }
  s += "}}";
  std::fprintf(out, "%s\n", s.c_str());
}

}  // namespace synod::bench
