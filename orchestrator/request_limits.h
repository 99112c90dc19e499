// Bounds on what a CreateJob request may carry, checked before anything is stored: every string
// of the spec (no NUL byte, at most a few hundred bytes; paths up to PATH_MAX), the request_id,
// and the spec's total size. A job record (job.json) and a ListJobs page stay small whatever a
// client sends. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "spar/v1/orchestrator.pb.h"

namespace spar::orchestrator {

constexpr size_t kMaxNameBytes = 256;        // JobSpec.name, CreateJobRequest.request_id
constexpr size_t kMaxPathBytes = 4096;       // base_model, *.path, *.magnet_checkpoint
constexpr size_t kMaxStringBytes = 256;      // every other string of the spec
constexpr size_t kMaxSpecBytes = 64 * 1024;  // the serialized JobSpec

// InvalidArgument naming the field ("round_training[2].training.optimizer") for a string with a
// NUL byte or over its bound, a request_id over kMaxNameBytes or with a NUL byte, or a spec whose
// serialized size passes kMaxSpecBytes.
absl::Status CheckRequestLimits(const v1::CreateJobRequest& request);

}  // namespace spar::orchestrator
