//! Offline checks of dashboards/: every metric a rule or dashboard panel queries is one
//! the agent exports (golden exposition) or a recording rule defines, and every
//! Grafana dashboard is well-formed JSON with the fields Grafana needs.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    Ok(out)
}

pub fn rule_files(root: &Path) -> Result<Vec<PathBuf>> {
    files(&root.join("dashboards/rules"), "yml")
}

pub fn rule_test_files(root: &Path) -> Result<Vec<PathBuf>> {
    files(&root.join("dashboards/rules/tests"), "yml")
}

/// `nodeward_*` identifiers in a text (metric names, possibly recording-rule names).
pub fn metric_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("nodeward_") {
        let start = i + pos;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Metric families in a text exposition.
pub fn exported(golden: &str) -> BTreeSet<String> {
    golden
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn recorded(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- record:")
                .or_else(|| l.trim().strip_prefix("record:"))
        })
        .map(|n| n.trim().to_string())
        .collect()
}

/// Expressions of every panel target in a dashboard, checking the panel shape.
fn dashboard_exprs(path: &Path, v: &Value) -> Result<Vec<String>> {
    let name = path.display();
    if v.get("title")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        bail!("{name}: dashboard has no title");
    }
    if v.get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        bail!("{name}: dashboard has no uid");
    }
    let panels = v
        .get("panels")
        .and_then(Value::as_array)
        .with_context(|| format!("{name}: no panels array"))?;
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    let mut rows = 0;
    for p in panels {
        let id = p
            .get("id")
            .and_then(Value::as_u64)
            .with_context(|| format!("{name}: panel without numeric id"))?;
        if !ids.insert(id) {
            bail!("{name}: duplicate panel id {id}");
        }
        let ty = p
            .get("type")
            .and_then(Value::as_str)
            .with_context(|| format!("{name}: panel {id} has no type"))?;
        let title = p.get("title").and_then(Value::as_str).unwrap_or("");
        if ty == "row" {
            rows += 1;
            continue;
        }
        if title.is_empty() {
            bail!("{name}: panel {id} has no title");
        }
        if p.get("gridPos").is_none() {
            bail!("{name}: panel {id} ({title}) has no gridPos");
        }
        let targets = p
            .get("targets")
            .and_then(Value::as_array)
            .with_context(|| format!("{name}: panel {id} ({title}) has no targets"))?;
        if targets.is_empty() {
            bail!("{name}: panel {id} ({title}) has no targets");
        }
        for t in targets {
            let expr = t
                .get("expr")
                .and_then(Value::as_str)
                .with_context(|| format!("{name}: panel {id} ({title}) target without expr"))?;
            exprs.push(expr.to_string());
        }
    }
    if rows == 0 {
        bail!("{name}: no rows (one row per detector, plus agent health)");
    }
    Ok(exprs)
}

pub fn check(root: &Path, golden: &Path) -> Result<()> {
    let golden =
        fs::read_to_string(golden).with_context(|| format!("reading {}", golden.display()))?;
    let mut known = exported(&golden);
    // Families that have series only while a condition holds are listed here.
    let families = root.join("agent/testdata/metric-families.txt");
    known.extend(
        fs::read_to_string(&families)
            .with_context(|| format!("reading {}", families.display()))?
            .lines()
            .map(str::to_string),
    );
    let mut rule_text = String::new();
    for f in rule_files(root)? {
        rule_text.push_str(&fs::read_to_string(&f)?);
    }
    known.extend(recorded(&rule_text));
    let mut missing = BTreeSet::new();
    for r in metric_refs(&rule_text) {
        if !known.contains(&r) {
            missing.insert(format!("rules: {r}"));
        }
    }
    let boards = files(&root.join("dashboards/grafana"), "json")?;
    if boards.is_empty() {
        bail!("no Grafana dashboards in dashboards/grafana");
    }
    for b in boards {
        let v: Value = serde_json::from_str(&fs::read_to_string(&b)?)
            .with_context(|| format!("{}: invalid JSON", b.display()))?;
        for expr in dashboard_exprs(&b, &v)? {
            for r in metric_refs(&expr) {
                if !known.contains(&r) {
                    missing.insert(format!(
                        "{}: {r}",
                        b.file_name().unwrap_or_default().to_string_lossy()
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "queries reference metrics nodeward does not export: {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_metric_references() {
        let refs = metric_refs(
            "sum(rate(nodeward_events_total{kind=\"x\"}[5m])) / nodeward:ratio and foo_nodeward_x",
        );
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            ["nodeward_events_total"]
        );
    }

    #[test]
    fn reads_families_from_an_exposition() {
        let text = "# HELP a_total x\n# TYPE nodeward_a_total counter\nnodeward_a_total 1\n";
        assert!(exported(text).contains("nodeward_a_total"));
    }

    #[test]
    fn rejects_a_dashboard_without_rows_or_targets() {
        let v: Value = serde_json::from_str(r#"{"title":"t","uid":"u","panels":[{"id":1,"type":"stat","title":"x","gridPos":{},"targets":[]}]}"#).unwrap();
        assert!(dashboard_exprs(Path::new("d.json"), &v).is_err());
        let v: Value = serde_json::from_str(r#"{"title":"t","uid":"u","panels":[{"id":1,"type":"stat","title":"x","gridPos":{},"targets":[{"expr":"up"}]}]}"#).unwrap();
        assert!(
            dashboard_exprs(Path::new("d.json"), &v)
                .unwrap_err()
                .to_string()
                .contains("no rows")
        );
    }
}
