//! Prometheus plumbing and the agent-wide families. Every family is registered and every
//! bounded label set is pre-set to 0 at start-up, so the first scrape already shows the
//! full picture. Each detector's families live in `detectors/<id>/metrics.rs`, the
//! kernel's in `kernel/metrics.rs`, the quarantine engine's in `quarantine/metrics.rs`;
//! `detectors::metrics::Metrics` composes them. Counters whose truth is elsewhere (the
//! kernel's per-CPU maps, `/proc`) are [`Totals`]: read at scrape time, never copied.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus::{
    CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// A prometheus registry that also remembers every family registered, including those
/// with no series yet (for the family list and the README's metrics reference).
#[derive(Default)]
pub struct Registry {
    inner: prometheus::Registry,
    /// Every family's name, help and labels, in registration order (the metrics
    /// reference of the README is generated from these: `cargo xtask docs`).
    descs: Mutex<Vec<FamilyDesc>>,
}

#[derive(Clone, Debug)]
pub struct FamilyDesc {
    pub name: String,
    pub help: String,
    pub labels: Vec<String>,
}

impl Registry {
    pub fn register(&self, c: Box<dyn Collector>) -> prometheus::Result<()> {
        let descs: Vec<FamilyDesc> = c
            .desc()
            .iter()
            .map(|d| FamilyDesc {
                name: d.fq_name.clone(),
                help: d.help.clone(),
                labels: d.variable_labels.clone(),
            })
            .collect();
        self.inner.register(c)?;
        self.descs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(descs);
        Ok(())
    }

    pub fn gather(&self) -> Vec<MetricFamily> {
        self.inner.gather()
    }

    /// Every registered family, in registration order.
    pub fn descriptions(&self) -> Vec<FamilyDesc> {
        self.descs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every registered family name, sorted.
    pub fn families(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<String> =
            self.descriptions().into_iter().map(|d| d.name).collect();
        names.into_iter().collect()
    }
}

pub mod reference;

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

/// A counter family whose values are running totals kept elsewhere (a kernel map, a
/// `/proc` file): the owner of the source sets the latest total read, the family shows
/// it. A total that goes backwards (a recycled map entry) is kept at its maximum, so
/// the exported counter never decreases.
pub struct Totals {
    template: CounterVec,
    opts: Opts,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Totals {
    pub fn new(name: &str, help: &str, labels: &'static [&'static str]) -> Totals {
        let opts = Opts::new(name, help);
        Totals {
            template: CounterVec::new(opts.clone(), labels).expect("valid metric"),
            opts,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// A new family registered with `registry` (for totals set by a sampler task).
    pub fn registered(
        registry: &Registry,
        name: &str,
        help: &str,
        labels: &'static [&'static str],
    ) -> std::sync::Arc<Totals> {
        let t = std::sync::Arc::new(Totals::new(name, help, labels));
        registry
            .register(Box::new(Shared(t.clone())))
            .expect("unique metric");
        t
    }

    /// Show the series at 0 until a total is read.
    pub fn preset(&self, labels: &[&str]) {
        let key = labels.iter().map(|s| s.to_string()).collect();
        self.lock().entry(key).or_insert(0.0);
    }

    pub fn set(&self, labels: &[&str], total: f64) {
        let key = labels.iter().map(|s| s.to_string()).collect();
        let mut values = self.lock();
        let v = values.entry(key).or_insert(0.0);
        if total > *v {
            *v = total;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, f64>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for Totals {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let fresh = CounterVec::new(self.opts.clone(), self.labels).expect("valid metric");
        for (key, v) in self.lock().iter() {
            let refs: Vec<&str> = key.iter().map(String::as_str).collect();
            fresh.with_label_values(&refs).inc_by(*v);
        }
        fresh.collect()
    }
}

/// Registers an `Arc<Totals>` (or any shared collector) with a registry.
pub struct Shared<C>(pub std::sync::Arc<C>);

impl<C: Collector> Collector for Shared<C> {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// Families of the agent as a whole.
pub struct Agent {
    pub registry: Registry,
    detector_up: IntGaugeVec,
    detector_enabled: IntGaugeVec,
    events: IntCounterVec,
    decode_errors: IntCounterVec,
    config_reloads: IntCounterVec,
    findings: IntCounterVec,
    read_errors: IntCounterVec,
    alert_pushes: IntCounterVec,
    alert_push_seconds: prometheus::Histogram,
    refusals: IntCounterVec,
    /// Records the reader could not queue for the detectors (userspace loss).
    pub queue_full: std::sync::Arc<AtomicU64>,
    /// fanotify events the kernel dropped (the secrets detector's queue overflowed).
    pub fanotify_lost: std::sync::Arc<AtomicU64>,
}

/// Outcomes of a pushed alert.
pub const PUSH_RESULTS: &[&str] = &["sent", "failed", "dropped"];

/// Requests refused at the agent's interfaces, by interface and reason (README "Failure
/// modes").
pub const REFUSALS: &[(&str, &str)] = &[
    ("http", "connection_limit"),
    ("http", "header_timeout"),
    ("http", "header_too_large"),
    ("http", "malformed"),
    ("http", "body_too_large"),
    ("http", "body_timeout"),
    ("http", "unauthorized"),
    ("control", "not_root"),
    ("control", "connection_limit"),
    ("control", "too_large"),
    ("control", "timeout"),
    ("control", "malformed"),
];

/// Reasons a record can fail to decode.
pub const DECODE_REASONS: &[&str] = &["short", "unknown_kind", "abi", "length"];

impl Agent {
    /// `detectors`: the detector ids; `findings`: every `detector` label of
    /// `nodeward_findings_total` (the detectors and the correlated `incident`).
    pub fn new(detectors: &[&str], findings: &[&str], record_kinds: &[&str]) -> Agent {
        let r = Registry::default();
        let build_info = gauge_vec(
            &r,
            "nodeward_build_info",
            "Build of the running agent (always 1).",
            &["version", "abi"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &agent_common::event::ABI_VERSION.to_string(),
            ])
            .set(1);
        let alert_push_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "nodeward_alert_push_seconds",
                "Time from a finding to every configured Alertmanager's acceptance of its pushed alert (retries included).",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("valid histogram");
        r.register(Box::new(alert_push_seconds.clone()))
            .expect("unique family");
        let a = Agent {
            alert_pushes: counter_vec(
                &r,
                "nodeward_alert_pushes_total",
                "Alerts pushed to Alertmanager (alerting.alertmanagers), by result: sent (every Alertmanager accepted it), failed (one refused it or timed out after the retries), dropped (the push queue was full).",
                &["result"],
            ),
            alert_push_seconds,
            detector_up: gauge_vec(
                &r,
                "nodeward_detector_up",
                "1 when the detector runs with all its required programs attached, else 0 (reason in the log and `nodeward check`).",
                &["detector"],
            ),
            detector_enabled: gauge_vec(
                &r,
                "nodeward_detector_enabled",
                "1 when the detector is enabled in the configuration, 0 when it is switched off (then its `nodeward_detector_up` is 0 by choice, not by failure).",
                &["detector"],
            ),
            events: counter_vec(
                &r,
                "nodeward_events_total",
                "Records received from the kernel and decoded.",
                &["kind"],
            ),
            decode_errors: counter_vec(
                &r,
                "nodeward_event_decode_errors_total",
                "Records that could not be decoded (short, unknown_kind, abi, length).",
                &["reason"],
            ),
            config_reloads: counter_vec(
                &r,
                "nodeward_config_reloads_total",
                "Configuration reloads (SIGHUP), by result.",
                &["result"],
            ),
            findings: counter_vec(
                &r,
                "nodeward_findings_total",
                "Findings reported, by detector.",
                &["detector"],
            ),
            read_errors: counter_vec(
                &r,
                "nodeward_kernel_read_errors_total",
                "Failed reads of kernel maps and program statistics (stats, qstats, exec_watch, program_info, map_full, reset_counts at scrape time; origin_table when a process seen through fanotify is looked up; the samplers' reset_peers, martian_counts, martian_sources, corosync_counters, corosync_totals, corosync_sources once a second): the affected families keep their last value and the error is logged (at most once a minute per source) — never a silent 0. A corosync detector that cannot read its counters is also down (nodeward_detector_up 0) until a read succeeds.",
                &["source"],
            ),
            refusals: counter_vec(
                &r,
                "nodeward_requests_refused_total",
                "Requests and connections refused at the agent's interfaces (http: connection_limit, header_timeout, header_too_large, malformed, body_too_large, body_timeout, unauthorized; control: not_root, connection_limit, too_large, timeout, malformed); each refusal is also logged.",
                &["interface", "reason"],
            ),
            registry: r,
            queue_full: Default::default(),
            fanotify_lost: Default::default(),
        };
        for d in detectors {
            a.detector_up.with_label_values(&[d]).set(0);
            a.detector_enabled.with_label_values(&[d]).set(1);
        }
        for d in findings {
            a.findings.with_label_values(&[d]);
        }
        for k in record_kinds {
            a.events.with_label_values(&[k]);
        }
        for r in DECODE_REASONS {
            a.decode_errors.with_label_values(&[r]);
        }
        for r in ["success", "failure"] {
            a.config_reloads.with_label_values(&[r]);
        }
        for r in PUSH_RESULTS {
            a.alert_pushes.with_label_values(&[r]);
        }
        for (interface, reason) in REFUSALS {
            a.refusals.with_label_values(&[interface, reason]);
        }
        a
    }

    /// A request or connection refused at an interface (one of [`REFUSALS`]).
    pub fn record_refusal(&self, interface: &str, reason: &str) {
        debug_assert!(
            REFUSALS.contains(&(interface, reason)),
            "{interface}/{reason}"
        );
        self.refusals.with_label_values(&[interface, reason]).inc();
    }

    /// One pushed alert's outcome (one of [`PUSH_RESULTS`]) and, when sent, how long
    /// it took from the finding.
    pub fn record_push(&self, result: &str, seconds: Option<f64>) {
        self.alert_pushes.with_label_values(&[result]).inc();
        if let Some(s) = seconds {
            self.alert_push_seconds.observe(s);
        }
    }

    /// The counter of failed kernel reads (`kernel::metrics::ReadErrors` counts and logs).
    pub fn read_errors(&self) -> IntCounterVec {
        self.read_errors.clone()
    }

    /// Show `nodeward_kernel_read_errors_total{source}` at 0 from the start.
    pub fn preset_read_errors(&self, sources: &[&str]) {
        for s in sources {
            self.read_errors.with_label_values(&[s]);
        }
    }

    pub fn set_detector_enabled(&self, detector: &str, enabled: bool) {
        self.detector_enabled
            .with_label_values(&[detector])
            .set(enabled.into());
    }

    pub fn set_detector_up(&self, detector: &str, up: bool) {
        self.detector_up
            .with_label_values(&[detector])
            .set(up.into());
    }

    pub fn record_event(&self, kind: &str) {
        self.events.with_label_values(&[kind]).inc();
    }

    pub fn record_queue_full(&self) {
        self.queue_full.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_decode_error(&self, reason: &str) {
        self.decode_errors.with_label_values(&[reason]).inc();
    }

    pub fn record_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn record_finding(&self, detector: &str) {
        self.findings.with_label_values(&[detector]).inc();
    }

    /// The text exposition of everything registered (collectors read at this moment).
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_show_the_latest_total_and_never_go_back() {
        let r = Registry::default();
        let t = Totals::registered(&r, "x_total", "help", &["k"]);
        t.preset(&["a"]);
        t.set(&["b"], 5.0);
        t.set(&["b"], 3.0);
        let text = TextEncoder::new().encode_to_string(&r.gather()).unwrap();
        assert!(text.contains("x_total{k=\"a\"} 0\n"), "{text}");
        assert!(text.contains("x_total{k=\"b\"} 5\n"), "{text}");
    }
}
