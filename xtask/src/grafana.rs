//! The Grafana dashboards type-checked against Grafana's published dashboard schema:
//! npm `@grafana/schema` (its `Dashboard` type) and TypeScript, both pinned in
//! `xtask/grafana-schema/package-lock.json` and installed by `npm ci` into the cache.
//! Each dashboard becomes `const d: Dashboard = <its JSON>;` for `tsc --noEmit --strict`.
//! A deliberately broken copy must fail, so a checker that accepts anything is caught.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{cache_dir, run, step};

/// Node.js and npm: the machine's, else Debian's (installed when missing).
fn ensure_node() -> Result<()> {
    let have = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("node") && have("npm")) {
        crate::setup::ensure_packages(&["nodejs", "npm"])?;
    }
    Ok(())
}

/// The pinned packages, installed once per lock file into the cache directory.
fn install(root: &Path) -> Result<PathBuf> {
    ensure_node()?;
    let src = root.join("xtask/grafana-schema");
    let dir = cache_dir().join("grafana-schema");
    let lock = fs::read_to_string(src.join("package-lock.json"))?;
    let stamp = dir.join("installed.lock");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str())
        && dir.join("node_modules/typescript/bin/tsc").is_file()
    {
        return Ok(dir);
    }
    step("installing @grafana/schema and TypeScript (npm ci, pinned by package-lock.json)");
    fs::create_dir_all(&dir)?;
    for f in ["package.json", "package-lock.json"] {
        fs::copy(src.join(f), dir.join(f))?;
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))?;
    fs::write(&stamp, lock)?;
    Ok(dir)
}

/// Type-check one dashboard; Err with tsc's diagnostics.
fn typecheck(dir: &Path, name: &str, json: &str) -> Result<()> {
    let ts = dir.join(format!("{name}.ts"));
    fs::write(
        &ts,
        format!(
            "import type {{ Dashboard }} from '@grafana/schema';\nexport const dashboard: Dashboard = {json};\n"
        ),
    )?;
    let out = Command::new("node")
        .arg(dir.join("node_modules/typescript/bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--target",
            "es2022",
        ])
        .arg(&ts)
        .current_dir(dir)
        .output()
        .context("running tsc")?;
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{name} does not match Grafana's dashboard schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn check(root: &Path) -> Result<()> {
    let dir = install(root)?;
    let boards = root.join("dashboards/grafana");
    let mut n = 0;
    for e in fs::read_dir(&boards)? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let json = fs::read_to_string(&p)?;
        let name = p.file_stem().unwrap_or_default().to_string_lossy();
        typecheck(&dir, &name, &json)?;
        // The same dashboard with a panel's height as a string must be refused.
        let mut bad: serde_json::Value = serde_json::from_str(&json)?;
        bad["panels"][0]["gridPos"]["h"] = serde_json::Value::from("eight");
        if typecheck(&dir, "broken", &bad.to_string()).is_ok() {
            bail!("the schema check accepted a broken copy of {name}: it checks nothing");
        }
        n += 1;
    }
    if n == 0 {
        bail!("no dashboards in {}", boards.display());
    }
    Ok(())
}
