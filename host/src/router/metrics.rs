//! Per-service traffic counters, rendered as Prometheus text at `/_pactown/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bounds, seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters of one service's stable address.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class: 1xx … 5xx.
    by_class: [AtomicU64; 5],
    /// Requests refused by the rate limit (also counted as 4xx).
    pub rate_limited: AtomicU64,
    /// Latency histogram: counts per bucket (cumulative on rendering) and the overflow.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Count one response.
    pub fn record(&self, status: u16, latency: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Responses with a 5xx status.
    pub fn errors(&self) -> u64 {
        self.by_class[4].load(Ordering::Relaxed)
    }

    /// The counters now, as JSON: requests, 5xx, rate-limited, latency sum (µs) and the
    /// count per bucket of [`BUCKETS`] (the last: over the largest).
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.total(),
            "errors": self.errors(),
            "rate_limited": self.rate_limited.load(Ordering::Relaxed),
            "latency_sum_us": self.sum_micros.load(Ordering::Relaxed),
            "buckets": self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect::<Vec<_>>(),
        })
    }
}

/// One service's figures for rendering.
pub struct Sample<'a> {
    /// Service name.
    pub service: &'a str,
    /// Its counters.
    pub metrics: &'a Metrics,
    /// Instances serving now.
    pub instances: u64,
    /// Restarts so far.
    pub restarts: u64,
    /// 1 when ready.
    pub up: bool,
}

/// Prometheus text exposition format.
pub fn render(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, f: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        f(&mut out);
    };
    family(
        "pactown_requests_total",
        "counter",
        "Requests answered at a service's stable address, by status class.",
        &mut |o| {
            for s in samples {
                for (i, c) in s.metrics.by_class.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "pactown_requests_total{{service=\"{}\",code=\"{}xx\"}} {}",
                        s.service,
                        i + 1,
                        c.load(Ordering::Relaxed)
                    );
                }
            }
        },
    );
    family(
        "pactown_request_errors_total",
        "counter",
        "Requests answered with a 5xx status.",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "pactown_request_errors_total{{service=\"{}\"}} {}",
                    s.service,
                    s.metrics.errors()
                );
            }
        },
    );
    family(
        "pactown_rate_limited_total",
        "counter",
        "Requests refused with 429 by the service's rate limit.",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "pactown_rate_limited_total{{service=\"{}\"}} {}",
                    s.service,
                    s.metrics.rate_limited.load(Ordering::Relaxed)
                );
            }
        },
    );
    family(
        "pactown_request_duration_seconds",
        "histogram",
        "Time to the response head, seconds.",
        &mut |o| {
            for s in samples {
                let mut cumulative = 0;
                for (i, b) in BUCKETS.iter().enumerate() {
                    cumulative += s.metrics.buckets[i].load(Ordering::Relaxed);
                    let _ = writeln!(
                        o,
                        "pactown_request_duration_seconds_bucket{{service=\"{}\",le=\"{b}\"}} {cumulative}",
                        s.service
                    );
                }
                cumulative += s.metrics.buckets[BUCKETS.len()].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "pactown_request_duration_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {cumulative}",
                    s.service
                );
                let sum = s.metrics.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(
                    o,
                    "pactown_request_duration_seconds_sum{{service=\"{}\"}} {sum}",
                    s.service
                );
                let _ = writeln!(
                    o,
                    "pactown_request_duration_seconds_count{{service=\"{}\"}} {cumulative}",
                    s.service
                );
            }
        },
    );
    family(
        "pactown_instances",
        "gauge",
        "Instances serving now (ready replicas, or live wasm instances).",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "pactown_instances{{service=\"{}\"}} {}",
                    s.service, s.instances
                );
            }
        },
    );
    family(
        "pactown_restarts_total",
        "counter",
        "Replica restarts.",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "pactown_restarts_total{{service=\"{}\"}} {}",
                    s.service, s.restarts
                );
            }
        },
    );
    family(
        "pactown_up",
        "gauge",
        "1 when the service is ready.",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "pactown_up{{service=\"{}\"}} {}",
                    s.service,
                    u8::from(s.up)
                );
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.record(200, Duration::from_micros(300));
        m.record(503, Duration::from_millis(3));
        m.record(200, Duration::from_secs(20));
        let text = render(&[Sample {
            service: "api",
            metrics: &m,
            instances: 2,
            restarts: 1,
            up: true,
        }]);
        assert!(text.contains("pactown_requests_total{service=\"api\",code=\"2xx\"} 2"));
        assert!(text.contains("pactown_request_errors_total{service=\"api\"} 1"));
        assert!(
            text.contains(
                "pactown_request_duration_seconds_bucket{service=\"api\",le=\"0.0005\"} 1"
            )
        );
        assert!(
            text.contains(
                "pactown_request_duration_seconds_bucket{service=\"api\",le=\"0.005\"} 2"
            )
        );
        assert!(
            text.contains("pactown_request_duration_seconds_bucket{service=\"api\",le=\"+Inf\"} 3")
        );
        assert!(text.contains("pactown_instances{service=\"api\"} 2"));
    }
}
