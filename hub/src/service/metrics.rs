//! Counters for `/metrics`, in Prometheus' text format.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub commands: AtomicU64,
    pub events: AtomicU64,
    pub api_requests: AtomicU64,
    pub api_errors: AtomicU64,
}

impl Metrics {
    /// The exposition: counters, then gauges computed by the caller.
    pub fn render(
        &self,
        operations_by_phase: &[(&str, u64)],
        clusters: u64,
        connected: u64,
    ) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        };
        counter(
            "ferry_hub_commands_sent_total",
            "Commands published to spokes.",
            &self.commands,
        );
        counter(
            "ferry_hub_events_total",
            "Spoke events processed.",
            &self.events,
        );
        counter(
            "ferry_hub_api_requests_total",
            "API requests answered.",
            &self.api_requests,
        );
        counter(
            "ferry_hub_api_errors_total",
            "API requests answered with an error.",
            &self.api_errors,
        );
        out.push_str(
            "# HELP ferry_hub_operations Operations by phase.\n# TYPE ferry_hub_operations gauge\n",
        );
        for (phase, n) in operations_by_phase {
            out.push_str(&format!("ferry_hub_operations{{phase=\"{phase}\"}} {n}\n"));
        }
        out.push_str(&format!(
            "# HELP ferry_hub_clusters Registered spokes.\n# TYPE ferry_hub_clusters gauge\nferry_hub_clusters {clusters}\n\
             # HELP ferry_hub_clusters_connected Spokes heard from within the deadline.\n# TYPE ferry_hub_clusters_connected gauge\nferry_hub_clusters_connected {connected}\n"
        ));
        out
    }
}
