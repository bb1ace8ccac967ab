//! The last-gasp push: findings that cannot wait for a scrape, sent at once to every
//! Alertmanager of `[alerting]` (its v2 API, `POST /api/v2/alerts`) with the labels the
//! shipped rules use and the attribution in annotations. A bounded queue, a timeout per
//! request, a few retries; every outcome counted in `nodeward_alert_pushes_total`.
//!
//! A reboot intent is pushed before the pipeline looks at anything else: the pipeline
//! waits for the acknowledgement (bounded by timeout × attempts) so the alert leaves
//! the host before the reboot takes it down.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    config::AlertingConfig,
    detectors::{Finding, Origin, metrics::Metrics},
};

/// One alert as Alertmanager's v2 API takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

struct Job {
    alert: Alert,
    queued: Instant,
    done: Option<oneshot::Sender<bool>>,
}

/// The pipeline's handle on the push task.
#[derive(Clone)]
pub struct Pusher {
    tx: mpsc::Sender<Job>,
    config: Arc<AlertingConfig>,
    metrics: Arc<Metrics>,
}

impl Pusher {
    /// Start the push task (nothing is sent while no Alertmanager is configured).
    pub fn start(mut config: AlertingConfig, metrics: Arc<Metrics>) -> Pusher {
        // The host name once, not per alert.
        config
            .labels
            .entry("instance".into())
            .or_insert_with(host_name);
        let (tx, rx) = mpsc::channel(config.queue);
        let config = Arc::new(config);
        tokio::spawn(run(rx, config.clone(), metrics.clone()));
        Pusher {
            tx,
            config,
            metrics,
        }
    }

    /// Push `finding` if the configuration says so. A reboot intent is waited for (at
    /// most timeout × attempts); anything else is queued.
    pub async fn finding(&self, finding: &Finding) {
        // Every finding passes here: nothing is built unless something is pushed.
        if self.config.alertmanagers.is_empty() {
            return;
        }
        let Some((what, alert)) = alert_for(finding, &self.config) else {
            return;
        };
        if !self.config.pushes(what) {
            return;
        }
        let urgent = matches!(finding, Finding::RebootIntent(_));
        let (done, wait) = if urgent {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            alert,
            queued: Instant::now(),
            done,
        };
        if self.tx.try_send(job).is_err() {
            warn!(finding = what, "alert not pushed: the push queue is full");
            self.metrics.agent.record_push("dropped", None);
            return;
        }
        if let Some(wait) = wait {
            let bound =
                self.config.timeout * (self.config.retries + 1) + backoff_total(&self.config);
            let _ = tokio::time::timeout(bound, wait).await;
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(4))
}

fn backoff_total(config: &AlertingConfig) -> Duration {
    (0..config.retries).map(backoff).sum()
}

async fn run(mut rx: mpsc::Receiver<Job>, config: Arc<AlertingConfig>, metrics: Arc<Metrics>) {
    let client = match client(&config) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "alerting: no HTTP client; findings are not pushed");
            while let Some(job) = rx.recv().await {
                metrics.agent.record_push("failed", None);
                drop(job.done);
            }
            return;
        }
    };
    while let Some(job) = rx.recv().await {
        let body = [job.alert.clone()];
        let mut all = true;
        for base in &config.alertmanagers {
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            let mut sent = false;
            for attempt in 0..=config.retries {
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt - 1)).await;
                }
                match authorize(client.post(&url), &config)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        sent = true;
                        break;
                    }
                    Ok(r) => {
                        warn!(url, status = %r.status(), attempt, "alerting: Alertmanager refused the alert")
                    }
                    Err(e) => warn!(url, error = %e, attempt, "alerting: push failed"),
                }
            }
            all &= sent;
        }
        let elapsed = job.queued.elapsed();
        if all {
            info!(
                alertname = job.alert.labels.get("alertname").map(String::as_str),
                ms = elapsed.as_millis() as u64,
                "alert pushed to Alertmanager"
            );
            metrics
                .agent
                .record_push("sent", Some(elapsed.as_secs_f64()));
        } else {
            metrics.agent.record_push("failed", None);
        }
        if let Some(done) = job.done {
            let _ = done.send(all);
        }
    }
}

fn read_secret(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| {
            warn!(path = %path.display(), error = %e, "alerting: credential file unreadable");
            String::new()
        })
}

fn authorize(req: reqwest::RequestBuilder, config: &AlertingConfig) -> reqwest::RequestBuilder {
    if let Some(file) = &config.bearer_token_file {
        req.bearer_auth(read_secret(file))
    } else if let Some(b) = &config.basic_auth {
        req.basic_auth(&b.username, Some(read_secret(&b.password_file)))
    } else {
        req
    }
}

fn client(config: &AlertingConfig) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(config.timeout)
        .user_agent(concat!("nodeward/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(config.tls.insecure_skip_verify);
    if let Some(ca) = &config.tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        let mut pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        pem.extend(std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?);
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| e.to_string())?);
    }
    b.build().map_err(|e| e.to_string())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The alert a finding stands for, with the `[alerting].push` name that selects it
/// (`config.labels` carries `instance`, set by [`Pusher::start`]).
pub fn alert_for(finding: &Finding, config: &AlertingConfig) -> Option<(&'static str, Alert)> {
    let mut labels = BTreeMap::new();
    let mut notes = BTreeMap::new();
    let (what, name, severity) = match finding {
        Finding::RebootIntent(i) if i.guard == Some("blocked") => {
            ("reboot_blocked", "NodewardRebootBlocked", "critical")
        }
        Finding::RebootIntent(i) if !i.expected => {
            labels.insert("path".into(), i.path.to_string());
            labels.insert("origin".into(), i.process.origin.label().to_string());
            (
                "reboot_intent",
                "NodewardUnexpectedRebootIntent",
                "critical",
            )
        }
        Finding::Secret(s) if s.kind == "secret_read" && !s.allowed => {
            notes.insert("path".into(), s.path.clone());
            (
                "secret_read",
                "NodewardSecretReadByUnexpectedProcess",
                "warning",
            )
        }
        Finding::Corosync(c) if c.kind == "rogue_member" => {
            if let Some(a) = c.addr {
                notes.insert("source".into(), a.to_string());
            }
            notes.insert("interfaces".into(), c.interfaces.join(","));
            ("rogue_member", "NodewardCorosyncRogueMember", "critical")
        }
        Finding::Arp(a) if a.kind == "conflict" => {
            labels.insert("address".into(), a.addr.to_string());
            labels.insert("vlan".into(), a.vlan.to_string());
            ("ip_conflict", "NodewardDuplicateIpActive", "critical")
        }
        _ => return None,
    };
    labels.insert("alertname".into(), name.into());
    labels.insert("severity".into(), severity.into());
    labels.insert("source".into(), "nodeward_push".into());
    for (k, v) in &config.labels {
        labels.insert(k.clone(), v.clone());
    }
    let process = match finding {
        Finding::RebootIntent(i) => Some((&i.process, &i.argv, &i.lineage)),
        Finding::Secret(s) => Some((&s.process, &s.argv, &s.lineage)),
        _ => None,
    };
    if let Some((p, argv, lineage)) = process {
        notes.insert(
            "process".into(),
            format!("{}[{}] uid {}", p.comm, p.pid, p.uid),
        );
        if !argv.is_empty() {
            notes.insert("command".into(), argv.join(" "));
        }
        if !lineage.is_empty() {
            notes.insert("lineage".into(), lineage.join(" > "));
        }
        if let Origin::Ssh {
            peer, peer_port, ..
        } = &p.origin
        {
            notes.insert("ssh_peer".into(), format!("{peer}:{peer_port}"));
        }
    }
    if let Finding::RebootIntent(i) = finding {
        notes.insert("because".into(), i.because.clone());
    }
    notes.insert("summary".into(), summary(finding));
    let now = SystemTime::now();
    Some((
        what,
        Alert {
            labels,
            annotations: notes,
            starts_at: rfc3339(now),
            ends_at: rfc3339(now + config.hold),
        },
    ))
}

/// One line for the person on call (the log line's words, shortened).
fn summary(finding: &Finding) -> String {
    match finding {
        Finding::RebootIntent(i) => format!(
            "{} reboot intent: {} via {} by {}[{}] ({})",
            if i.guard == Some("blocked") {
                "BLOCKED"
            } else {
                "UNEXPECTED"
            },
            i.action.as_str(),
            i.path,
            i.process.comm,
            i.process.pid,
            i.because
        ),
        Finding::Secret(s) => format!(
            "{} read by {}[{}], not an allowed reader",
            s.path, s.process.comm, s.process.pid
        ),
        Finding::Corosync(c) => format!(
            "cluster traffic from {} outside the nodelist",
            c.addr.map(|a| a.to_string()).unwrap_or_default()
        ),
        Finding::Arp(a) => format!(
            "{} claimed by {} and {}",
            a.addr,
            a.mac,
            a.old_mac.map(|m| m.to_string()).unwrap_or_default()
        ),
        _ => String::new(),
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
