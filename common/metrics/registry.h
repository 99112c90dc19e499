// In-process Prometheus metrics: counters, gauges and fixed-bucket histograms with labels, and the
// text exposition format 0.0.4. prometheus-cpp is not packaged in Debian 12; the API is shaped
// like its BuildCounter().Name().Help().Register(registry) so a later switch is mechanical.
//
// Families are registered once at startup (a component's Metrics struct); children (one label
// set) are created up front with Add({...}) and kept by reference: updating a child is a relaxed
// atomic operation, safe from any thread. Registry::Serialize is thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace spar::metrics {

using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  void Increment(double v = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Increment(double v = 1.0);
  void Decrement(double v = 1.0) { Increment(-v); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the finite buckets, strictly increasing.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    uint64_t count = 0;
    double sum = 0.0;
  };
  Snapshot Collect() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1 (+Inf)
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// Exponential bucket bounds: start, start*factor, ... (count bounds).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// A metric family: one name, one help text, children by label set.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), bounds_(std::move(bounds)) {}
  // Returns the child for `labels`, creating it on first use. References stay valid for the life
  // of the registry. Not for hot paths: call once and keep the reference.
  T& Add(const Labels& labels);
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  std::vector<std::pair<Labels, const T*>> Children() const;

 private:
  std::string name_;
  std::string help_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> children_;
};

class Registry {
 public:
  // Registration aborts (SPAR_CHECK) on an invalid or duplicate name: names are compile-time
  // constants of our own, so a failure is a programming error.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help);
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help);
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds);

  // Text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4).
  std::string Serialize() const;

 private:
  void CheckNewName(const std::string& name);
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  std::vector<std::pair<std::string, MetricType>> order_;  // registration order
};

// Builder shaped like prometheus-cpp.
class CounterBuilder {
 public:
  CounterBuilder& Name(std::string n) {
    name_ = std::move(n);
    return *this;
  }
  CounterBuilder& Help(std::string h) {
    help_ = std::move(h);
    return *this;
  }
  Family<Counter>& Register(Registry& r) { return r.AddCounter(name_, help_); }

 private:
  std::string name_, help_;
};
class GaugeBuilder {
 public:
  GaugeBuilder& Name(std::string n) {
    name_ = std::move(n);
    return *this;
  }
  GaugeBuilder& Help(std::string h) {
    help_ = std::move(h);
    return *this;
  }
  Family<Gauge>& Register(Registry& r) { return r.AddGauge(name_, help_); }

 private:
  std::string name_, help_;
};
class HistogramBuilder {
 public:
  HistogramBuilder& Name(std::string n) {
    name_ = std::move(n);
    return *this;
  }
  HistogramBuilder& Help(std::string h) {
    help_ = std::move(h);
    return *this;
  }
  HistogramBuilder& Buckets(std::vector<double> b) {
    bounds_ = std::move(b);
    return *this;
  }
  Family<Histogram>& Register(Registry& r) { return r.AddHistogram(name_, help_, bounds_); }

 private:
  std::string name_, help_;
  std::vector<double> bounds_;
};
inline CounterBuilder BuildCounter() { return {}; }
inline GaugeBuilder BuildGauge() { return {}; }
inline HistogramBuilder BuildHistogram() { return {}; }

}  // namespace spar::metrics
