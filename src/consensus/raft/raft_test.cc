#include <gtest/gtest.h>
#include "consensus/raft/raft.h"
TEST(RaftBuild, Links) { synod::consensus::raft::Config c; c.id = 1; synod::consensus::DurableState d; synod::consensus::raft::Raft r(c, d); }
