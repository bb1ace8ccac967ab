//! CLI verbs that talk to a running agent over the control socket, and `audit`, which
//! reads the journal directly (it works when the agent is down).

use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::{
    config::Config,
    control::{
        self, QuarantineRequest, Request,
        reply::{Bindings, DecodeError, List, RebootAllowed, Released, Status},
    },
    http::webhook::cgroup_id,
    net::Mac,
    quarantine::{Outcome, Target, journal},
};

/// Why a verb failed (exit status 1, the message on stderr).
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The agent answered, and said no.
    #[error("{0}")]
    Refused(String),
    /// The action was answered but did not take effect (refused, failed, not found).
    #[error("{0}")]
    NotApplied(String),
    #[error(
        "give exactly one of --drop-ip, --drop-mac, --block-exec, or --arp-claim IP with --drop-mac MAC"
    )]
    Target,
    #[error(transparent)]
    Cgroup(#[from] crate::http::webhook::CgroupError),
    #[error("{path}: {source}")]
    Journal {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Send `request`; the verb's typed answer and the answer as JSON (for `--json`).
fn call<T: serde::de::DeserializeOwned>(
    config: &Config,
    request: &Request,
) -> Result<(T, Value), VerbError> {
    control::call(&config.control.socket, request).map_err(|e| match e {
        control::ControlError::Answer(DecodeError::Refused(why)) => VerbError::Refused(why),
        other => VerbError::Control(other),
    })
}

fn when(ms: u64) -> String {
    crate::time::rfc3339_ms(ms)
}

/// The answer as JSON with `--json`, else in words.
fn print<T>(answer: &(T, Value), json: bool, text: impl FnOnce(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer.1).unwrap_or_default()
        );
    } else {
        text(&answer.0);
    }
}

pub fn status(config: &Config, json: bool) -> Result<(), VerbError> {
    let answer: (Status, Value) = call(config, &Request::Status)?;
    print(&answer, json, |s| {
        let mode = |m: &crate::config::Mode| serde_json::to_value(m).unwrap_or_default();
        println!(
            "nodeward {}  mode {}",
            s.version,
            mode(&s.mode).as_str().unwrap_or("?")
        );
        for a in &s.actions {
            println!(
                "action {:<13} mode {:<8} backend {}",
                a.action,
                mode(&a.mode).as_str().unwrap_or(""),
                a.backend
            );
        }
        for d in &s.detectors {
            println!("program {:<24} {:<11} {}", d.program, d.status, d.reason);
        }
        println!(
            "quarantines active: {}  proposals pending: {}",
            s.quarantines_active, s.proposals_pending
        );
        match &s.last_reboot_story {
            Some(story) => println!("last reboot: {story}"),
            None => println!("last reboot: none recorded since nodeward was installed"),
        }
        if let Some(a) = &s.reboot_allowance {
            println!("reboot allowance until {} ({})", when(a.until_ms), a.reason);
        }
        let c = &s.cluster;
        if c.enabled {
            let role = match c.role.as_ref().map(|r| r.standalone) {
                Some(true) => "standalone",
                Some(false) => "member",
                None => "undecided",
            };
            println!(
                "cluster: {} {} — role {role} ({}); {} member address(es), ports {}",
                c.config.as_deref().unwrap_or(Path::new("")).display(),
                c.config_state.as_deref().unwrap_or(""),
                c.role.as_ref().map_or("", |r| r.reason.as_str()),
                c.members.as_ref().map_or(0, Vec::len),
                serde_json::to_string(&c.ports).unwrap_or_default()
            );
            if let Some(e) = &c.config_error {
                println!("cluster configuration error: {e}");
            }
            for r in &c.rogues {
                println!(
                    "ROGUE cluster source {} at {} packets/s",
                    r.addr, r.packets_per_second
                );
            }
        }
        println!("audit journal: {}", s.journal.display());
    });
    Ok(())
}

pub fn list(config: &Config, json: bool) -> Result<(), VerbError> {
    let answer: (List, Value) = call(config, &Request::Quarantine(QuarantineRequest::List))?;
    let target = |t: &Target| serde_json::to_string(t).unwrap_or_default();
    print(&answer, json, |l| {
        println!(
            "{:<6} {:<9} {:<26} {:<26} TARGET / TRIGGER",
            "ID", "STATE", "SINCE", "EXPIRES"
        );
        for q in &l.active {
            println!(
                "{:<6} {:<9} {:<26} {:<26} {} / {} {}",
                q.id,
                "active",
                when(q.applied_ms),
                when(q.expires_ms),
                target(&q.target),
                q.trigger.source,
                q.trigger.detail
            );
        }
        for p in &l.proposals {
            println!(
                "{:<6} {:<9} {:<26} {:<26} {} / {} {}",
                p.id,
                "proposed",
                when(p.proposed_ms),
                when(p.expires_ms),
                target(&p.target),
                p.trigger.source,
                p.trigger.detail
            );
        }
    });
    Ok(())
}

/// What `quarantine add` was asked to do (its command-line options).
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Drop all packets from this source address.
    #[arg(long, value_name = "ADDR")]
    pub drop_ip: Option<std::net::IpAddr>,
    /// Drop all frames from this source MAC (with --arp-claim: only its ARP claims).
    #[arg(long, value_name = "MAC")]
    pub drop_mac: Option<Mac>,
    /// With --drop-ip: drop only its cluster (corosync) traffic, on the interfaces
    /// the corosync detector watches (never a nodelist member's).
    #[arg(long, requires = "drop_ip")]
    pub cluster_only: bool,
    /// Drop ARP packets claiming this IPv4 address from the --drop-mac MAC.
    #[arg(long, value_name = "IP", requires = "drop_mac")]
    pub arp_claim: Option<std::net::Ipv4Addr>,
    /// Kill every exec of this binary (basename) ...
    #[arg(long, value_name = "NAME")]
    pub block_exec: Option<String>,
    /// ... inside this cgroup (v2 path); unscoped blocks need policy permission.
    #[arg(long, value_name = "PATH", requires = "block_exec")]
    pub cgroup: Option<String>,
    /// Interface(s) to enforce a packet drop on (repeatable).
    #[arg(long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// How long (e.g. 90s, 10m, 2h); default quarantine.default_ttl.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// Why, for the audit journal.
    #[arg(long, default_value = "")]
    pub reason: String,
}

pub fn target(a: &AddArgs) -> Result<Target, VerbError> {
    let interfaces = a.interfaces.clone();
    match (&a.drop_ip, &a.drop_mac, &a.arp_claim, &a.block_exec) {
        (Some(addr), None, None, None) if a.cluster_only => Ok(Target::ClusterSource {
            addr: *addr,
            interfaces,
        }),
        (Some(addr), None, None, None) => Ok(Target::SourceIp {
            addr: *addr,
            interfaces,
        }),
        (None, Some(mac), None, None) => Ok(Target::SourceMac {
            mac: *mac,
            interfaces,
        }),
        (None, Some(mac), Some(ip), None) => Ok(Target::ArpClaim {
            ip: *ip,
            mac: *mac,
            interfaces,
        }),
        (None, None, None, Some(bin)) => {
            let (id, path) = match &a.cgroup {
                Some(p) => (cgroup_id(p)?, Some(p.clone())),
                None => (0, None),
            };
            Ok(Target::Exec {
                binary: bin.clone(),
                cgroup_id: id,
                cgroup: path,
            })
        }
        _ => Err(VerbError::Target),
    }
}

pub fn add(config: &Config, a: AddArgs, json: bool) -> Result<(), VerbError> {
    let request = Request::Quarantine(QuarantineRequest::Add {
        target: target(&a)?,
        ttl_s: a.ttl.map(|d| d.as_secs().max(1)),
        reason: a.reason,
    });
    let answer: (Outcome, Value) = call(config, &request)?;
    print(&answer, json, |o| match o {
        Outcome::Applied { id, expires_ms } => {
            println!("applied: quarantine {id} until {}", when(*expires_ms))
        }
        Outcome::Proposed { id, expires_ms } => println!(
            "proposed: {id} (run `nodeward approve {id}` before {})",
            when(*expires_ms)
        ),
        Outcome::DryRun { would } => println!("dry run: {would}"),
        Outcome::Failed { error, .. } => println!("failed: {error}"),
        Outcome::Refused { reason, detail } => println!("{}: {detail}", reason.result()),
    });
    match answer.0 {
        Outcome::Applied { .. } | Outcome::Proposed { .. } | Outcome::DryRun { .. } => Ok(()),
        _ => Err(VerbError::NotApplied("not applied".into())),
    }
}

pub fn approve(config: &Config, id: u64, json: bool) -> Result<(), VerbError> {
    let answer: (Outcome, Value) = call(
        config,
        &Request::Quarantine(QuarantineRequest::Approve { id }),
    )?;
    print(&answer, json, |o| {
        println!(
            "{}: {}",
            answer.1["result"].as_str().unwrap_or("?"),
            match o {
                Outcome::Applied { id, .. }
                | Outcome::Proposed { id, .. }
                | Outcome::Failed { id, .. } => id.to_string(),
                _ => "null".into(),
            }
        )
    });
    match answer.0 {
        Outcome::Applied { .. } => Ok(()),
        Outcome::Refused { detail, .. } => {
            Err(VerbError::NotApplied(format!("not applied: {detail}")))
        }
        Outcome::Failed { error, .. } => {
            Err(VerbError::NotApplied(format!("not applied: {error}")))
        }
        _ => Err(VerbError::NotApplied("not applied: ".into())),
    }
}

pub fn release(config: &Config, id: Option<u64>, json: bool) -> Result<(), VerbError> {
    let answer: (Released, Value) = call(
        config,
        &Request::Quarantine(QuarantineRequest::Release { id }),
    )?;
    print(&answer, json, |r| {
        println!(
            "released: {}",
            serde_json::to_string(&r.released).unwrap_or_default()
        )
    });
    Ok(())
}

pub fn bindings(config: &Config, interface: Option<String>, json: bool) -> Result<(), VerbError> {
    let answer: (Bindings, Value) = call(config, &Request::Bindings { interface })?;
    print(&answer, json, |b| {
        println!(
            "{:<16} {:<18} {:<16} {:<26} {:<26} CONFLICT",
            "ADDRESS", "MAC", "INTERFACE", "FIRST SEEN", "LAST SEEN"
        );
        for row in &b.bindings {
            let conflict = if row.conflict {
                let macs: Vec<String> = row
                    .conflict_macs
                    .iter()
                    .map(|(mac, port)| format!("{mac}@{port}"))
                    .collect();
                format!("YES: {}", macs.join(" "))
            } else {
                "-".into()
            };
            println!(
                "{:<16} {:<18} {:<16} {:<26} {:<26} {}",
                row.address.to_string(),
                row.mac.to_string(),
                row.interface,
                row.first_seen,
                row.last_seen,
                conflict
            );
        }
    });
    Ok(())
}

pub fn allow_reboot(config: &Config, for_: Duration, reason: String) -> Result<(), VerbError> {
    let (allowed, _): (RebootAllowed, Value) = call(
        config,
        &Request::AllowReboot {
            for_s: for_.as_secs().max(1),
            reason,
        },
    )?;
    println!("reboots are expected until {}", when(allowed.until_ms));
    Ok(())
}

/// Print the journal (all kept files, oldest first); with `follow`, keep printing.
pub fn audit(config: &Config, follow: bool) -> Result<(), VerbError> {
    let dir = &config.agent.state_dir;
    let mut last_seq = 0;
    let mut print_new = |dir: &Path| -> Result<(), VerbError> {
        for f in journal::files(dir, config.quarantine.journal_keep) {
            let records = journal::read_records(&f).map_err(|source| VerbError::Journal {
                path: f.clone(),
                source,
            })?;
            for r in records {
                if r.seq > last_seq {
                    last_seq = r.seq;
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                }
            }
        }
        Ok(())
    };
    print_new(dir)?;
    if follow {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            print_new(dir)?;
        }
    }
    Ok(())
}
