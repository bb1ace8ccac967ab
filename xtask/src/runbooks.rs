//! Every alert of `dashboards/rules` links its runbook: `runbook_url` is
//! `RUNBOOK_BASE/<detector>.md#<alertname in lowercase>`, and that page of `docs/runbooks/`
//! has a `## <AlertName>` section (the anchor GitHub derives from it).

use std::{fs, path::Path};

use anyhow::{Result, bail};

/// Where the runbooks are published: `docs/runbooks/` of the project's repository.
/// Change it here (one place) when the rules are vendored elsewhere.
pub const RUNBOOK_BASE: &str = "https://github.com/nodeward/nodeward/blob/main/docs/runbooks";

/// One alert rule as written in a rules file.
#[derive(Debug, PartialEq)]
pub struct Alert {
    pub detector: String,
    pub name: String,
    pub runbook_url: Option<String>,
}

/// The alerts of one rules file, read line by line (our files keep one key per line).
pub fn alerts_in(detector: &str, text: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    // Whether the block being read is an alert's (a recording rule ends it).
    let mut in_alert = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            in_alert = true;
            out.push(Alert {
                detector: detector.to_string(),
                name: name.trim().to_string(),
                runbook_url: None,
            });
        } else if line.starts_with("- record:") {
            in_alert = false;
        } else if let Some(url) = line.strip_prefix("runbook_url:")
            && in_alert
            && let Some(a) = out.last_mut()
        {
            a.runbook_url = Some(url.trim().trim_matches('"').to_string());
        }
    }
    out
}

/// Every alert of every rules file.
pub fn alerts(root: &Path) -> Result<Vec<Alert>> {
    let mut out = Vec::new();
    for f in crate::dashboards::rule_files(root)? {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let detector = name.trim_end_matches(".rules.yml").to_string();
        out.extend(alerts_in(&detector, &fs::read_to_string(&f)?));
    }
    Ok(out)
}

pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let all = alerts(root)?;
    if all.is_empty() {
        bail!("no alert rules found in dashboards/rules");
    }
    for a in &all {
        let want = format!("{RUNBOOK_BASE}/{}.md#{}", a.detector, a.name.to_lowercase());
        if a.runbook_url.as_deref() != Some(want.as_str()) {
            problems.push(format!(
                "{}: runbook_url is {:?}, want {want}",
                a.name, a.runbook_url
            ));
        }
        let page = root.join(format!("docs/runbooks/{}.md", a.detector));
        let text = fs::read_to_string(&page).unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.trim_end() == format!("## {}", a.name))
        {
            problems.push(format!(
                "{}: no `## {}` section in {}",
                a.name,
                a.name,
                page.display()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("runbooks: {}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alerts_and_their_runbook_urls() {
        let text = "groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: up\n      - alert: One\n        expr: up\n        annotations:\n          runbook_url: \"https://h/x.md#one\"\n      - alert: Two\n        expr: up\n";
        let got = alerts_in("x", text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].runbook_url.as_deref(), Some("https://h/x.md#one"));
        assert_eq!(got[1].name, "Two");
        assert_eq!(got[1].runbook_url, None);
    }
}
