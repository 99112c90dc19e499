// A server-streaming reactor fed by a producer thread: the library's worker pushes messages with
// Write() as results complete and ends the stream with Finish(); the reactor keeps at most one
// gRPC write in flight and queues the rest. The producer must call Finish() exactly once.
//
// Lifetime: gRPC owns the reactor until OnDone; the producer holds a shared_ptr to the sink, which
// outlives the reactor, so writes after the client went away are dropped safely.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>

namespace spar::services {

template <typename Msg>
class StreamSink : public std::enable_shared_from_this<StreamSink<Msg>> {
 public:
  // Creates the reactor to return from the RPC handler and the sink the producer keeps.
  static std::pair<grpc::ServerWriteReactor<Msg>*, std::shared_ptr<StreamSink>> Create() {
    auto sink = std::shared_ptr<StreamSink>(new StreamSink());
    auto* reactor = new Reactor(sink);
    sink->reactor_ = reactor;
    return {reactor, sink};
  }

  // Queues `msg`. Returns false when the client cancelled or the stream broke: stop producing.
  bool Write(Msg msg) {
    const Msg* to_write = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (broken_ || finish_requested_) return false;
      queue_.push_back(std::move(msg));
      if (writing_) return true;
      writing_ = true;
      to_write = &queue_.front();
    }
    reactor_->StartWrite(to_write);
    return true;
  }

  // Ends the stream once queued messages are written (or immediately if it broke).
  void Finish(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      final_status_ = std::move(status);
      if (writing_) return;  // OnWriteDone finishes
      if (broken_ && final_status_.ok()) final_status_ = grpc::Status::CANCELLED;
    }
    reactor_->Finish(final_status_);
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_;
  }

 private:
  class Reactor : public grpc::ServerWriteReactor<Msg> {
   public:
    explicit Reactor(std::shared_ptr<StreamSink> sink) : sink_(std::move(sink)) {}
    void OnWriteDone(bool ok) override { sink_->OnWriteDone(ok); }
    void OnCancel() override { sink_->OnCancel(); }
    void OnDone() override { delete this; }

   private:
    std::shared_ptr<StreamSink> sink_;
  };

  StreamSink() = default;

  void OnWriteDone(bool ok) {
    const Msg* next = nullptr;
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      if (!ok) {
        broken_ = true;
        queue_.clear();
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        finish = finish_requested_;
        if (finish && broken_ && final_status_.ok()) final_status_ = grpc::Status::CANCELLED;
      }
    }
    if (next != nullptr) {
      reactor_->StartWrite(next);
    } else if (finish) {
      reactor_->Finish(final_status_);
    }
  }

  // The client went away: finish now (unless a write is in flight; OnWriteDone finishes then),
  // so the call ends even if the producer is idle; the producer's later Finish is a no-op.
  void OnCancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = true;
      if (finish_requested_) return;
      finish_requested_ = true;
      final_status_ = grpc::Status::CANCELLED;
      if (writing_) return;
    }
    reactor_->Finish(grpc::Status::CANCELLED);
  }

  mutable std::mutex mu_;
  Reactor* reactor_ = nullptr;  // owned by gRPC; valid until OnDone, which needs Finish first
  std::deque<Msg> queue_;       // front() is the message being written
  bool writing_ = false;
  bool broken_ = false;
  bool finish_requested_ = false;
  grpc::Status final_status_;
};

}  // namespace spar::services
