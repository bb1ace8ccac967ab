//! CLI verbs that talk to a running agent over the control socket, and `audit`, which
//! reads the journal directly (it works when the agent is down).

use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::{
    config::Config,
    control::{self, Request},
    http::webhook::cgroup_id,
    net::Mac,
    quarantine::{Target, journal},
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

fn call(config: &Config, request: &Request) -> Result<Value, VerbError> {
    let v = control::call(&config.control.socket, request)?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(VerbError::Refused(
            v["error"].as_str().unwrap_or("request failed").to_string(),
        ))
    }
}

fn when(ms: &Value) -> String {
    let ms = ms.as_u64().unwrap_or(0);
    crate::time::rfc3339_ms(ms)
}

fn print(v: &Value, json: bool, text: impl FnOnce(&Value)) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        text(v);
    }
}

pub fn status(config: &Config, json: bool) -> Result<(), VerbError> {
    let v = call(config, &Request::Status)?;
    print(&v, json, |v| {
        println!(
            "nodeward {}  mode {}",
            v["version"].as_str().unwrap_or("?"),
            v["mode"].as_str().unwrap_or("?")
        );
        for a in v["actions"].as_array().into_iter().flatten() {
            println!(
                "action {:<13} mode {:<8} backend {}",
                a["action"].as_str().unwrap_or(""),
                a["mode"].as_str().unwrap_or(""),
                a["backend"].as_str().unwrap_or("")
            );
        }
        for d in v["detectors"].as_array().into_iter().flatten() {
            println!(
                "program {:<24} {:<11} {}",
                d["program"].as_str().unwrap_or(""),
                d["status"].as_str().unwrap_or(""),
                d["reason"].as_str().unwrap_or("")
            );
        }
        println!(
            "quarantines active: {}  proposals pending: {}",
            v["quarantines_active"], v["proposals_pending"]
        );
        match v["last_reboot_story"].as_str() {
            Some(story) => println!("last reboot: {story}"),
            None => println!("last reboot: none recorded since nodeward was installed"),
        }
        if let Some(until) = v["reboot_allowance"]["until_ms"].as_u64() {
            println!(
                "reboot allowance until {} ({})",
                when(&until.into()),
                v["reboot_allowance"]["reason"].as_str().unwrap_or("")
            );
        }
        let c = &v["cluster"];
        if c["enabled"] == true {
            let role = match c["role"]["standalone"].as_bool() {
                Some(true) => "standalone",
                Some(false) => "member",
                None => "undecided",
            };
            println!(
                "cluster: {} {} — role {role} ({}); {} member address(es), ports {}",
                c["config"].as_str().unwrap_or(""),
                c["config_state"].as_str().unwrap_or(""),
                c["role"]["reason"].as_str().unwrap_or(""),
                c["members"].as_array().map_or(0, Vec::len),
                c["ports"]
            );
            if let Some(e) = c["config_error"].as_str() {
                println!("cluster configuration error: {e}");
            }
            for r in c["rogues"].as_array().into_iter().flatten() {
                println!(
                    "ROGUE cluster source {} at {} packets/s",
                    r["addr"].as_str().unwrap_or(""),
                    r["packets_per_second"]
                );
            }
        }
        println!("audit journal: {}", v["journal"].as_str().unwrap_or(""));
    });
    Ok(())
}

pub fn list(config: &Config, json: bool) -> Result<(), VerbError> {
    let v = call(config, &Request::List)?;
    print(&v, json, |v| {
        println!(
            "{:<6} {:<9} {:<26} {:<26} TARGET / TRIGGER",
            "ID", "STATE", "SINCE", "EXPIRES"
        );
        for q in v["active"].as_array().into_iter().flatten() {
            println!(
                "{:<6} {:<9} {:<26} {:<26} {} / {} {}",
                q["id"],
                "active",
                when(&q["applied_ms"]),
                when(&q["expires_ms"]),
                q["target"],
                q["trigger"]["source"].as_str().unwrap_or(""),
                q["trigger"]["detail"].as_str().unwrap_or("")
            );
        }
        for p in v["proposals"].as_array().into_iter().flatten() {
            println!(
                "{:<6} {:<9} {:<26} {:<26} {} / {} {}",
                p["id"],
                "proposed",
                when(&p["proposed_ms"]),
                when(&p["expires_ms"]),
                p["target"],
                p["trigger"]["source"].as_str().unwrap_or(""),
                p["trigger"]["detail"].as_str().unwrap_or("")
            );
        }
    });
    Ok(())
}

/// What `quarantine add` was asked to do.
pub struct AddArgs {
    pub drop_ip: Option<std::net::IpAddr>,
    pub drop_mac: Option<Mac>,
    /// With `drop_ip`: drop only its cluster (corosync) traffic.
    pub cluster_only: bool,
    pub arp_claim: Option<std::net::Ipv4Addr>,
    pub block_exec: Option<String>,
    pub cgroup: Option<String>,
    pub interfaces: Vec<String>,
    pub ttl: Option<Duration>,
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
    let request = Request::Add {
        target: target(&a)?,
        ttl_s: a.ttl.map(|d| d.as_secs().max(1)),
        reason: a.reason,
    };
    let v = call(config, &request)?;
    print(&v, json, |v| match v["result"].as_str().unwrap_or("") {
        "applied" => println!(
            "applied: quarantine {} until {}",
            v["id"],
            when(&v["expires_ms"])
        ),
        "proposed" => println!(
            "proposed: {} (run `nodeward approve {}` before {})",
            v["id"],
            v["id"],
            when(&v["expires_ms"])
        ),
        "dry_run" => println!("dry run: {}", v["would"].as_str().unwrap_or("")),
        "failed" => println!("failed: {}", v["error"].as_str().unwrap_or("")),
        "refused" => println!(
            "refused_{}: {}",
            v["reason"].as_str().unwrap_or("?"),
            v["detail"].as_str().unwrap_or("")
        ),
        other => println!("{other}: {}", v["detail"].as_str().unwrap_or("")),
    });
    match v["result"].as_str() {
        Some("applied" | "proposed" | "dry_run") => Ok(()),
        _ => Err(VerbError::NotApplied("not applied".into())),
    }
}

pub fn approve(config: &Config, id: u64, json: bool) -> Result<(), VerbError> {
    let v = call(config, &Request::Approve { id })?;
    print(&v, json, |v| {
        println!("{}: {}", v["result"].as_str().unwrap_or("?"), v["id"])
    });
    if v["result"] == "applied" {
        Ok(())
    } else {
        Err(VerbError::NotApplied(format!(
            "not applied: {}",
            v["detail"].as_str().or(v["error"].as_str()).unwrap_or("")
        )))
    }
}

pub fn release(config: &Config, id: Option<u64>, json: bool) -> Result<(), VerbError> {
    let v = call(config, &Request::Release { id })?;
    print(&v, json, |v| println!("released: {}", v["released"]));
    Ok(())
}

pub fn bindings(config: &Config, interface: Option<String>, json: bool) -> Result<(), VerbError> {
    let v = call(config, &Request::Bindings { interface })?;
    print(&v, json, |v| {
        println!(
            "{:<16} {:<18} {:<16} {:<26} {:<26} CONFLICT",
            "ADDRESS", "MAC", "INTERFACE", "FIRST SEEN", "LAST SEEN"
        );
        for b in v["bindings"].as_array().into_iter().flatten() {
            let conflict = if b["conflict"] == true {
                let macs: Vec<String> = b["conflict_macs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        format!(
                            "{}@{}",
                            m[0].as_str().unwrap_or(""),
                            m[1].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!("YES: {}", macs.join(" "))
            } else {
                "-".into()
            };
            println!(
                "{:<16} {:<18} {:<16} {:<26} {:<26} {}",
                b["address"].as_str().unwrap_or(""),
                b["mac"].as_str().unwrap_or(""),
                b["interface"].as_str().unwrap_or(""),
                b["first_seen"].as_str().unwrap_or(""),
                b["last_seen"].as_str().unwrap_or(""),
                conflict
            );
        }
    });
    Ok(())
}

pub fn allow_reboot(config: &Config, for_: Duration, reason: String) -> Result<(), VerbError> {
    let v = call(
        config,
        &Request::AllowReboot {
            for_s: for_.as_secs().max(1),
            reason,
        },
    )?;
    println!("reboots are expected until {}", when(&v["until_ms"]));
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
