#include <gtest/gtest.h>

#include "sim/simulator.h"

namespace synod::sim {
namespace {

TEST(Simulator, SameSeedSameRun) {
  SimOptions o;
  o.seed = 7;
  o.fault_ms = 3000;
  auto a = RunSimulation(o);
  auto b = RunSimulation(o);
  EXPECT_EQ(a.stats.events, b.stats.events);
  EXPECT_EQ(a.trace_tail, b.trace_tail);
}

}  // namespace
}  // namespace synod::sim
