//! `[alerting]`: findings pushed at once to Alertmanager (its v2 alerts API), for the
//! ones that cannot wait for a scrape — above all a reboot intent, whose host may be
//! gone before the next one.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// The findings that can be pushed (each named after the alert rule it stands for).
pub const PUSHABLE: &[&str] = &[
    "reboot_intent",
    "reboot_blocked",
    "secret_read",
    "rogue_member",
    "ip_conflict",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Alertmanager base URLs (`http://` or `https://`, e.g. `http://am1:9093`); each
    /// alert goes to every one. Empty: nothing is pushed.
    pub alertmanagers: Vec<String>,
    /// Which findings are pushed (of [`PUSHABLE`]). `reboot_intent` is an unexpected
    /// one only.
    pub push: Vec<String>,
    /// Per request.
    #[serde(with = "crate::time::duration")]
    pub timeout: Duration,
    /// Further attempts after a failed request (with a short back-off).
    pub retries: u32,
    /// Alerts waiting to be sent; beyond it the newest is dropped (and counted).
    pub queue: usize,
    /// How long a pushed alert stays firing in Alertmanager (it is sent once).
    #[serde(with = "crate::time::duration")]
    pub hold: Duration,
    /// Labels added to every pushed alert, e.g. the `instance` Prometheus gives this
    /// node's scrape target, so that pushed and rule-fired alerts group together.
    /// `instance` defaults to the host name.
    pub labels: BTreeMap<String, String>,
    /// A file holding a bearer token (`Authorization: Bearer`), read at each push (a
    /// rotated token needs no reload).
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: TlsConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// A file holding the password.
    pub password_file: PathBuf,
}

/// TLS to Alertmanager, as Prometheus's `tls_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            alertmanagers: Vec::new(),
            push: PUSHABLE.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(2),
            retries: 2,
            queue: 256,
            hold: Duration::from_secs(3600),
            labels: BTreeMap::new(),
            bearer_token_file: None,
            basic_auth: None,
            tls: TlsConfig::default(),
        }
    }
}

impl AlertingConfig {
    /// The first problem a start or reload must refuse: (field, message).
    pub fn problem(&self) -> Option<(String, String)> {
        for (i, url) in self.alertmanagers.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Some((
                    format!("alerting.alertmanagers[{i}]"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        for (i, p) in self.push.iter().enumerate() {
            if !PUSHABLE.contains(&p.as_str()) {
                return Some((
                    format!("alerting.push[{i}]"),
                    format!("unknown finding {p:?} (one of {})", PUSHABLE.join(", ")),
                ));
            }
        }
        let field = |f: &str, m: &str| Some((format!("alerting.{f}"), m.to_string()));
        if self.timeout.is_zero() {
            return field("timeout", "must be longer than zero");
        }
        if self.queue == 0 {
            return field("queue", "must be at least 1");
        }
        if self.bearer_token_file.is_some() && self.basic_auth.is_some() {
            return field(
                "bearer_token_file",
                "bearer_token_file and basic_auth are exclusive",
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return field("tls", "cert_file and key_file go together");
        }
        None
    }

    pub fn pushes(&self, what: &str) -> bool {
        !self.alertmanagers.is_empty() && self.push.iter().any(|p| p == what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_alerting_settings_name_their_field() {
        let ok = AlertingConfig {
            alertmanagers: vec!["https://am:9093".into()],
            ..Default::default()
        };
        assert_eq!(ok.problem(), None);
        assert!(ok.pushes("reboot_intent"));
        assert!(
            !AlertingConfig::default().pushes("reboot_intent"),
            "no URL, no push"
        );
        let bad = |c: AlertingConfig| c.problem().map(|(f, _)| f);
        let with = |f: fn(&mut AlertingConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c
        };
        assert_eq!(
            bad(with(|c| c.alertmanagers.push("am:9093".into()))),
            Some("alerting.alertmanagers[1]".into())
        );
        assert_eq!(
            bad(with(|c| c.push = vec!["reboot".into()])),
            Some("alerting.push[0]".into())
        );
        assert_eq!(
            bad(with(|c| c.timeout = Duration::ZERO)),
            Some("alerting.timeout".into())
        );
        assert_eq!(
            bad(with(|c| {
                c.bearer_token_file = Some("/t".into());
                c.basic_auth = Some(BasicAuth {
                    username: "u".into(),
                    password_file: "/p".into(),
                });
            })),
            Some("alerting.bearer_token_file".into())
        );
        assert_eq!(
            bad(with(|c| c.tls.cert_file = Some("/c".into()))),
            Some("alerting.tls".into())
        );
    }
}
