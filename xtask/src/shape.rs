//! The shape of the tree, kept by cheap checks (ARCHITECTURE.md): one detector id names
//! its files in every crate, its alert group and its dashboard row; metric families are
//! `nodeward_<id>_*` or agent-wide; a detector's state machine imports no kernel,
//! metrics, daemon or quarantine code; no source file is over 800 lines.

use std::{fs, path::Path};

use agent_common::DETECTORS;
use anyhow::{Result, bail};

/// Source files longer than this are split (ARCHITECTURE.md).
const MAX_LINES: usize = 800;

/// Families that belong to the agent as a whole, not to one detector.
const AGENT_WIDE: &[&str] = &[
    "nodeward_alert_push",
    "nodeward_build_info",
    "nodeward_config_reloads_total",
    "nodeward_detector_up",
    "nodeward_detector_enabled",
    "nodeward_event_decode_errors_total",
    "nodeward_events_lost_total",
    "nodeward_events_total",
    "nodeward_findings_total",
    "nodeward_kernel_",
    "nodeward_map_",
    "nodeward_program_",
    "nodeward_ringbuf_",
    "nodeward_quarantine_",
    "nodeward_enforcement_",
    "nodeward_incident",
    "nodeward_webhook_",
    "nodeward_last_reboot",
    "nodeward_requests_refused_total",
];

/// Families named before the convention (of `reboot` and `tcp_reset`); renaming them
/// would break users' queries.
const LEGACY: &[&str] = &["nodeward_reboots_total", "nodeward_tcp_resets_total"];

/// Detectors without an alert group of their own, and why.
const NO_ALERT_GROUP: &[(&str, &str)] = &[(
    "session",
    "its findings are attribution (the SSH origin) carried by every other detector's alerts",
)];

/// The agent's top-level modules from the bottom up: a module may import only modules
/// before it (`cli → daemon → {http, control, detectors, quarantine, kernel, metrics} →
/// {config, net, time, logging}`; inside the middle layer the order below is the one
/// direction). A detector's configuration section (`detectors/<id>/config.rs`,
/// `detectors/config.rs`) belongs to `config`.
const LAYERS: &[&str] = &[
    "time",
    "net",
    "config",
    "logging",
    "metrics",
    "kernel",
    "quarantine",
    "detectors",
    "control",
    "http",
    "daemon",
    "cli",
];

/// Module paths a detector's pure state machine (`agent/src/detectors/<id>.rs`) must not
/// import.
const IMPURE: &[&str] = &[
    "daemon",
    "kernel",
    "loader",
    "metrics",
    "quarantine",
    "pipeline",
    "run",
    "guard",
    "http",
    "control",
];

pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let rules_dir = root.join("dashboards/rules");
    let dashboard = fs::read_to_string(root.join("dashboards/grafana/nodeward.json"))?;
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard)?;
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for id in DETECTORS {
        for f in [
            format!("agent-common/src/{id}.rs"),
            format!("agent-ebpf/src/{id}.rs"),
            format!("agent/src/detectors/{id}.rs"),
            format!("agent/src/detectors/{id}/config.rs"),
            format!("tests/src/{id}.rs"),
        ] {
            if !root.join(&f).is_file() {
                problems.push(format!("detector {id}: {f} is missing"));
            }
        }
        if !NO_ALERT_GROUP.iter().any(|(d, _)| d == id) {
            let rules = rules_dir.join(format!("{id}.rules.yml"));
            let text = fs::read_to_string(&rules).unwrap_or_default();
            if !text.contains(&format!("- name: {id}\n")) {
                problems.push(format!(
                    "detector {id}: no alert group `{id}` in {}",
                    rules.display()
                ));
            }
        }
        if !rows.contains(id) {
            problems.push(format!("detector {id}: no dashboard row titled `{id}`"));
        }
        let pure = root.join(format!("agent/src/detectors/{id}.rs"));
        if let Ok(text) = fs::read_to_string(&pure) {
            for m in impure_imports(&text) {
                problems.push(format!(
                    "{}: the state machine imports crate::{m} (kernel, metrics, daemon and quarantine code belong in detectors/{id}/)",
                    pure.display()
                ));
            }
        }
    }
    let golden = fs::read_to_string(root.join("agent/testdata/metrics.golden.prom"))?;
    for family in golden
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
    {
        let own = DETECTORS
            .iter()
            .any(|id| family.starts_with(&format!("nodeward_{id}_")));
        let wide = AGENT_WIDE.iter().any(|p| family.starts_with(p));
        let legacy = LEGACY.contains(&family);
        if !(own || wide || legacy) {
            problems.push(format!(
                "metric family {family} is neither nodeward_<detector>_* nor agent-wide"
            ));
        }
    }
    layering(&root.join("agent/src"), &mut problems);
    for dir in ["agent", "agent-common", "agent-ebpf", "xtask", "tests"] {
        long_files(&root.join(dir), &mut problems);
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// The forbidden modules a file names through `crate::` paths (in `use` lists too).
fn impure_imports(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(pos) = rest.find("crate::") {
        rest = &rest[pos + "crate::".len()..];
        // `crate::{a, b::c}` or `crate::a`
        let names: Vec<&str> = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            inner[..end]
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or(""))
                .collect()
        } else {
            vec![
                rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(""),
            ]
        };
        for n in names {
            if let Some(m) = IMPURE.iter().find(|m| **m == n)
                && !found.contains(m)
            {
                found.push(*m);
            }
        }
    }
    found
}

/// The layer unit of a module path (`["detectors", "arp", "config"]` is `config`).
fn unit(path: &[&str]) -> Option<&'static str> {
    let first = *path.first()?;
    let is_section =
        first == "detectors" && (path.get(1) == Some(&"config") || path.get(2) == Some(&"config"));
    let name = if is_section { "config" } else { first };
    LAYERS.iter().find(|l| **l == name).copied()
}

fn rank(unit: &str) -> usize {
    LAYERS.iter().position(|l| *l == unit).unwrap_or(0)
}

/// Every `crate::…` path a file names, with `use` trees expanded
/// (`crate::{a::{b, c}, d}` names `a::b`, `a::c` and `d`).
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(pos) = rest.find("crate::") {
        rest = &rest[pos + "crate::".len()..];
        expand("", rest, &mut out);
    }
    out
}

/// Expand one use tree at the start of `text` under `prefix`; returns the bytes read.
fn expand(prefix: &str, text: &str, out: &mut Vec<String>) -> usize {
    let t = text.trim_start();
    let skipped = text.len() - t.len();
    if let Some(inner) = t.strip_prefix('{') {
        let mut i = 0;
        loop {
            let rest = &inner[i..];
            let trimmed = rest.trim_start();
            i += rest.len() - trimmed.len();
            if trimmed.starts_with('}') || trimmed.is_empty() {
                return skipped + 1 + i + 1;
            }
            i += expand(prefix, &inner[i..], out);
            let rest = &inner[i..];
            let trimmed = rest.trim_start();
            i += rest.len() - trimmed.len();
            if trimmed.starts_with(',') {
                i += 1;
            }
        }
    }
    let ident: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return skipped + t.chars().next().map_or(0, char::len_utf8);
    }
    let path = if prefix.is_empty() {
        ident.clone()
    } else {
        format!("{prefix}::{ident}")
    };
    let after = &t[ident.len()..];
    if let Some(next) = after.strip_prefix("::") {
        return skipped + ident.len() + 2 + expand(&path, next, out);
    }
    out.push(path);
    skipped + ident.len()
}

/// Imports against the direction of `LAYERS`, one problem per (file, module).
fn layering(src: &Path, problems: &mut Vec<String>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f);
        let segs: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| s != "mod")
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let Some(from) = unit(&segs) else { continue };
        let text = fs::read_to_string(&f).unwrap_or_default();
        let mut seen = Vec::new();
        for p in crate_paths(&text) {
            let parts: Vec<&str> = p.split("::").collect();
            if let Some(to) = unit(&parts)
                && to != from
                && rank(to) > rank(from)
                && !seen.contains(&to)
            {
                seen.push(to);
                problems.push(format!(
                    "{}: `{from}` imports crate::{p} (`{to}` is above it: {})",
                    f.display(),
                    LAYERS.join(" < ")
                ));
            }
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn long_files(dir: &Path, problems: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            long_files(&p, problems);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let n = fs::read_to_string(&p)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if n > MAX_LINES {
                problems.push(format!(
                    "{}: {n} lines (split it: at most {MAX_LINES})",
                    p.display()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{crate_paths, impure_imports, unit};

    #[test]
    fn use_trees_expand_to_paths_and_units() {
        assert_eq!(
            crate_paths("use crate::{a::{b, c::D}, e};\nlet x = crate::f::g(1);"),
            vec!["a::b", "a::c::D", "e", "f::g"]
        );
        assert_eq!(unit(&["detectors", "arp", "config"]), Some("config"));
        assert_eq!(unit(&["detectors", "config"]), Some("config"));
        assert_eq!(unit(&["detectors", "arp", "kernel"]), Some("detectors"));
        assert_eq!(unit(&["lib"]), None);
    }

    #[test]
    fn finds_forbidden_modules_in_paths_and_use_lists() {
        assert_eq!(
            impure_imports("use crate::{config::X, metrics::Metrics};\n"),
            vec!["metrics"]
        );
        assert_eq!(
            impure_imports("let q = crate::quarantine::Mac;"),
            vec!["quarantine"]
        );
        assert!(
            impure_imports("use crate::net::Mac;\n// crate::metrics in a comment\n").is_empty()
        );
    }
}
