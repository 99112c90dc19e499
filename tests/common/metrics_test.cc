#include <gtest/gtest.h>

#include <thread>

#include "common/metrics/registry.h"

namespace spar::metrics {
namespace {

TEST(MetricsTest, CounterGaugeExposition) {
  Registry r;
  auto& req = BuildCounter().Name("spar_test_requests_total").Help("Requests.").Register(r);
  req.Add({{"code", "OK"}}).Increment(3);
  req.Add({{"code", "UNAVAILABLE"}}).Increment();
  auto& g = r.AddGauge("spar_test_in_flight", "In flight \\ with\nnewline.");
  g.Add({}).Set(2.5);
  std::string text = r.Serialize();
  EXPECT_NE(text.find("# HELP spar_test_requests_total Requests.\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE spar_test_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("spar_test_requests_total{code=\"OK\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("spar_test_requests_total{code=\"UNAVAILABLE\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("# HELP spar_test_in_flight In flight \\\\ with\\nnewline.\n"),
            std::string::npos);
  EXPECT_NE(text.find("spar_test_in_flight 2.5\n"), std::string::npos);
}

TEST(MetricsTest, CounterIgnoresNegativeIncrements) {
  Registry r;
  Counter& c = r.AddCounter("spar_test_total", "x").Add({});
  c.Increment(2);
  c.Increment(-5);
  EXPECT_DOUBLE_EQ(c.Value(), 2);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndInfEqualsCount) {
  Registry r;
  Histogram& h =
      r.AddHistogram("spar_test_latency_seconds", "Latency.", {0.1, 1, 10}).Add({{"m", "a"}});
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0}) h.Observe(v);
  std::string text = r.Serialize();
  EXPECT_NE(text.find("spar_test_latency_seconds_bucket{m=\"a\",le=\"0.1\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("spar_test_latency_seconds_bucket{m=\"a\",le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("spar_test_latency_seconds_bucket{m=\"a\",le=\"10\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("spar_test_latency_seconds_bucket{m=\"a\",le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("spar_test_latency_seconds_count{m=\"a\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("spar_test_latency_seconds_sum{m=\"a\"} 22.65\n"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry r;
  r.AddCounter("spar_test_total", "x").Add({{"path", "a\"b\\c\nd"}}).Increment();
  EXPECT_NE(r.Serialize().find("spar_test_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter& c = r.AddCounter("spar_test_total", "x").Add({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_DOUBLE_EQ(c.Value(), 40000);
}

TEST(MetricsDeathTest, DuplicateNameAborts) {
  Registry r;
  r.AddCounter("spar_test_total", "x");
  EXPECT_DEATH(r.AddGauge("spar_test_total", "y"), "duplicate metric");
}

}  // namespace
}  // namespace spar::metrics
