// Status propagation macros, shaped like ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN so a later
// Abseil upgrade is a rename. Debian 12's Abseil (20220623) has neither.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SPAR_STATUS_CONCAT_INNER_(a, b) a##b
#define SPAR_STATUS_CONCAT_(a, b) SPAR_STATUS_CONCAT_INNER_(a, b)

#define SPAR_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status spar_status_ = (expr);        \
    if (!spar_status_.ok()) return spar_status_; \
  } while (0)

#define SPAR_ASSIGN_OR_RETURN(lhs, rexpr) \
  SPAR_ASSIGN_OR_RETURN_IMPL_(SPAR_STATUS_CONCAT_(spar_statusor_, __LINE__), lhs, rexpr)

#define SPAR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
