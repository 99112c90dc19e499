#include "common/metrics/registry.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/log.h"

namespace spar::metrics {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

bool ValidName(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {  // shortest text that round-trips
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string LabelString(const Labels& labels, const std::string& extra_key = "",
                        const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + EscapeLabel(v) + "\"";
  }
  if (!extra_key.empty()) {
    if (!first) out += ",";
    out += extra_key + "=\"" + extra_value + "\"";
  }
  out += "}";
  return out;
}

}  // namespace

void Counter::Increment(double v) {
  if (v < 0) return;  // counters only go up
  AtomicAdd(value_, v);
}

void Gauge::Increment(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i + 1 < bounds_.size(); ++i) SPAR_CHECK(bounds_[i] < bounds_[i + 1]);
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(acc);
  }
  s.count = acc;  // +Inf bucket == count, by construction
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

template <typename T>
T& Family<T>::Add(const Labels& labels) {
  for (const auto& [k, v] : labels) SPAR_CHECK(ValidName(k) && k != "le") << k;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(labels);
  if (it != children_.end()) return *it->second;
  std::unique_ptr<T> child;
  if constexpr (std::is_same_v<T, Histogram>) {
    child = std::make_unique<Histogram>(bounds_);
  } else {
    child = std::make_unique<T>();
  }
  T& ref = *child;
  children_.emplace(labels, std::move(child));
  return ref;
}

template <typename T>
std::vector<std::pair<Labels, const T*>> Family<T>::Children() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<Labels, const T*>> out;
  for (const auto& [l, c] : children_) out.emplace_back(l, c.get());
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void Registry::CheckNewName(const std::string& name) {
  SPAR_CHECK(ValidName(name)) << "invalid metric name " << name;
  for (const auto& [n, t] : order_) SPAR_CHECK(n != name) << "duplicate metric " << name;
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  CheckNewName(name);
  counters_.push_back(std::make_unique<Family<Counter>>(name, help));
  order_.emplace_back(name, MetricType::kCounter);
  return *counters_.back();
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  CheckNewName(name);
  gauges_.push_back(std::make_unique<Family<Gauge>>(name, help));
  order_.emplace_back(name, MetricType::kGauge);
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  CheckNewName(name);
  histograms_.push_back(std::make_unique<Family<Histogram>>(name, help, std::move(bounds)));
  order_.emplace_back(name, MetricType::kHistogram);
  return *histograms_.back();
}

std::string Registry::Serialize() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream out;
  auto header = [&](const std::string& name, const std::string& help, const char* type) {
    out << "# HELP " << name << " " << EscapeHelp(help) << "\n";
    out << "# TYPE " << name << " " << type << "\n";
  };
  size_t ci = 0, gi = 0, hi = 0;
  for (const auto& [name, type] : order_) {
    if (type == MetricType::kCounter) {
      const auto& f = *counters_[ci++];
      header(f.name(), f.help(), "counter");
      for (const auto& [labels, c] : f.Children()) {
        out << f.name() << LabelString(labels) << " " << FormatValue(c->Value()) << "\n";
      }
    } else if (type == MetricType::kGauge) {
      const auto& f = *gauges_[gi++];
      header(f.name(), f.help(), "gauge");
      for (const auto& [labels, g] : f.Children()) {
        out << f.name() << LabelString(labels) << " " << FormatValue(g->Value()) << "\n";
      }
    } else {
      const auto& f = *histograms_[hi++];
      header(f.name(), f.help(), "histogram");
      for (const auto& [labels, h] : f.Children()) {
        Histogram::Snapshot s = h->Collect();
        for (size_t i = 0; i < s.bounds.size(); ++i) {
          out << f.name() << "_bucket" << LabelString(labels, "le", FormatValue(s.bounds[i])) << " "
              << s.cumulative[i] << "\n";
        }
        out << f.name() << "_bucket" << LabelString(labels, "le", "+Inf") << " " << s.count << "\n";
        out << f.name() << "_sum" << LabelString(labels) << " " << FormatValue(s.sum) << "\n";
        out << f.name() << "_count" << LabelString(labels) << " " << s.count << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace spar::metrics
