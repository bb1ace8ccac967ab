use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Repository root (the workspace directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is one level down")
        .to_path_buf()
}

pub fn step(msg: &str) {
    eprintln!("==> {msg}");
}

/// Run a command, streaming its output; fail with its command line on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Run a command and capture stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The time now as BENCHMARKS.md dates its sections ("2026-11-27 14:15 UTC").
pub fn utc_now() -> Result<String> {
    Ok(
        output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?
            .trim()
            .to_string(),
    )
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// This process's PATH with `dir` first (for a tool xtask installed).
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH entries hold no ':'")
}

/// Cache directory for tools xtask installs.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NODEWARD_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("nodeward")
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- begin {name}: generated, do not edit -->"),
        format!("<!-- end {name} -->"),
    )
}

/// A generated section of a document, markers included.
pub fn section(doc: &str, name: &str) -> Option<String> {
    let (begin, end) = markers(name);
    let start = doc.find(&begin)?;
    let stop = doc[start..].find(&end)? + start + end.len();
    Some(doc[start..stop].to_string() + "\n")
}

/// Every generated section whose name starts with `prefix`, in document order; a
/// section whose end marker is missing is an error (it would be dropped).
pub fn sections(doc: &str, prefix: &str) -> Result<Vec<String>> {
    let opening = format!("<!-- begin {prefix}");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(at) = rest.find(&opening) {
        let line = &rest[at..];
        let first = line.lines().next().unwrap_or_default();
        let name = first["<!-- begin ".len()..]
            .split(": generated")
            .next()
            .unwrap_or_default();
        let (_, end) = markers(name);
        let Some(stop) = line.find(&end) else {
            bail!(
                "generated section `{name}` has no end marker `{end}`: restore it, then run again"
            );
        };
        let stop = stop + end.len();
        out.push(line[..stop].to_string() + "\n");
        rest = &line[stop..];
    }
    Ok(out)
}

/// Put `text` into the generated section `name` of the file: replaced where it was,
/// appended when the file has none yet.
pub fn write_section(path: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) = markers(name);
    let block = format!("{begin}\n{}\n{end}\n", text.trim_end());
    let out = match section(&doc, name) {
        Some(old) => doc.replacen(&old, &block, 1),
        None => format!("{}\n\n{block}", doc.trim_end()),
    };
    std::fs::write(path, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let dir = std::env::temp_dir().join(format!("xtask-section-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("doc.md");
        std::fs::write(&f, "# Doc\n\ntext\n").unwrap();
        write_section(&f, "s", "one").unwrap();
        write_section(&f, "s", "two").unwrap();
        let doc = std::fs::read_to_string(&f).unwrap();
        assert!(doc.starts_with("# Doc\n\ntext\n"), "{doc}");
        assert!(doc.contains("two") && !doc.contains("one"), "{doc}");
        assert_eq!(section(&doc, "s").unwrap().matches("two").count(), 1);
        assert_eq!(section(&doc, "other"), None);
        write_section(&f, "s two", "three").unwrap();
        write_section(&f, "other", "between").unwrap();
        write_section(&f, "s three", "four").unwrap();
        let doc = std::fs::read_to_string(&f).unwrap();
        let found = sections(&doc, "s").unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].contains("two") && found[1].contains("three"),
            "{found:?}"
        );
        assert!(found[2].contains("four") && !found[2].contains("between"));
        assert!(sections(&doc, "t").unwrap().is_empty());
        let cut = doc.replace("<!-- end s two -->", "");
        let err = sections(&cut, "s").unwrap_err().to_string();
        assert!(err.contains("`s two` has no end marker"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
