//! Tests of the exposition: golden file, families, README reference.
use super::*;

const GOLDEN: &str = "testdata/metrics.golden.prom";

/// The exposition of a fresh agent (no kernel attached) is pinned in a golden
/// file, which `cargo xtask test` also lints with `promtool check metrics`.
/// Regenerate with UPDATE_GOLDEN=1 after an intended change.
#[test]
fn first_scrape_matches_golden_exposition() {
    let text = Metrics::new().render();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).expect("golden exposition (UPDATE_GOLDEN=1 creates it)");
    assert_eq!(
        text, golden,
        "exposition changed; if intended, run with UPDATE_GOLDEN=1"
    );
}

#[test]
fn loss_and_reboot_series_exist_from_the_first_scrape() {
    let text = Metrics::new().render();
    for line in [
        "nodeward_events_lost_total{reason=\"queue_full\"} 0",
        "nodeward_events_lost_total{reason=\"ringbuf_full\"} 0",
        "nodeward_detector_up{detector=\"reboot\"} 0",
        "nodeward_reboot_intents_total{expected=\"false\",origin=\"ssh\",path=\"syscall\"} 0",
        "nodeward_reboots_total{cause=\"unknown\",expected=\"unknown\"} 0",
        "nodeward_event_decode_errors_total{reason=\"unknown_kind\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
}

/// Every registered family, including those with series only while a condition
/// holds (e.g. the last reboot). `cargo xtask test` checks dashboards against it.
fn families() -> Vec<String> {
    Metrics::new().agent.registry.families()
}

#[test]
fn family_list_matches_golden() {
    let text = families().join("\n") + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/metric-families.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(&path).expect("family list (UPDATE_GOLDEN=1 creates it)")
    );
}

/// The README's metrics reference is generated from the registered families;
/// `cargo xtask docs` (UPDATE_DOCS=1) rewrites it.
#[test]
fn readme_metrics_reference_is_generated_from_the_code() {
    use crate::metrics::reference;
    let m = Metrics::new();
    let table = reference::markdown(&m.agent.registry);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let fresh = reference::splice(&readme, &table).expect("metrics-reference markers in README.md");
    if std::env::var_os("UPDATE_DOCS").is_some() && fresh != readme {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    assert!(
        fresh == readme,
        "README metrics reference drifted from the code: run `cargo xtask docs`"
    );
    for name in families() {
        assert!(
            table.contains(&format!("`{name}`")),
            "{name} not in the reference"
        );
    }
}

#[test]
fn families_with_series_follow_the_type_naming_convention() {
    use crate::metrics::reference;
    let m = Metrics::new();
    for (name, kind) in reference::types(&m.agent.registry) {
        if kind != "histogram" {
            assert_eq!(kind, reference::conventional_type(&name), "{name}");
        }
    }
}

#[test]
fn queue_drops_show_up_at_scrape() {
    let m = Metrics::new();
    for _ in 0..3 {
        m.agent.record_queue_full();
    }
    assert!(
        m.render()
            .lines()
            .any(|l| l == "nodeward_events_lost_total{reason=\"queue_full\"} 3")
    );
}

/// A detector switched off is `enabled` 0 (so `NodewardDetectorDown` stays quiet); one
/// whose required program failed is enabled and down.
#[test]
fn a_disabled_detector_is_down_by_choice_a_failed_one_is_enabled_and_down() {
    use crate::kernel::programs::{PROGRAMS, ProgramStatus, Status};
    let m = Metrics::new();
    let statuses: Vec<ProgramStatus> = PROGRAMS
        .iter()
        .filter(|p| p.detector == "reboot" || p.detector == "martian")
        .map(|p| ProgramStatus {
            spec: *p,
            status: if p.detector == "martian" {
                Status::Disabled
            } else {
                Status::Unavailable("absent".into())
            },
        })
        .collect();
    m.set_program_statuses(&statuses);
    let text = m.render();
    for line in [
        "nodeward_detector_enabled{detector=\"martian\"} 0",
        "nodeward_detector_up{detector=\"martian\"} 0",
        "nodeward_detector_enabled{detector=\"reboot\"} 1",
        "nodeward_detector_up{detector=\"reboot\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
}

/// A corosync detector whose kernel counters cannot be read sees nothing: it is down
/// while they fail (the failures counted by source), and up again once a read works —
/// through the runtime's own `record_read`, and also after the program statuses are
/// set again (a reload).
#[test]
fn corosync_is_down_while_its_counters_are_unreadable() {
    use crate::detectors::corosync::runtime::record_read;
    use crate::kernel::programs::{PROGRAMS, ProgramStatus, Status};
    let m = Metrics::new();
    let statuses: Vec<ProgramStatus> = PROGRAMS
        .iter()
        .filter(|p| p.detector == "corosync")
        .map(|p| ProgramStatus {
            spec: *p,
            status: Status::Attached,
        })
        .collect();
    m.set_program_statuses(&statuses);
    let up = |m: &Metrics| {
        m.render()
            .lines()
            .find(|l| l.starts_with("nodeward_detector_up{detector=\"corosync\"}"))
            .map(str::to_string)
    };
    let is_up = Some("nodeward_detector_up{detector=\"corosync\"} 1".to_string());
    let is_down = Some("nodeward_detector_up{detector=\"corosync\"} 0".to_string());
    m.set_corosync_state(true, 2, Some(false));
    assert_eq!(up(&m), is_up);
    assert_eq!(record_read(&m, Ok::<u32, (&str, &str)>(7)), Some(7));
    for _ in 0..3 {
        assert_eq!(
            record_read::<u32, _>(&m, Err(("corosync_sources", "injected"))),
            None
        );
        assert_eq!(up(&m), is_down);
    }
    m.set_program_statuses(&statuses);
    assert_eq!(
        up(&m),
        is_down,
        "a reload must not bring it up while reads fail"
    );
    let text = m.render();
    assert!(
        text.lines()
            .any(|l| l == "nodeward_kernel_read_errors_total{source=\"corosync_sources\"} 3"),
        "{text}"
    );
    assert_eq!(record_read(&m, Ok::<u32, (&str, &str)>(8)), Some(8));
    assert_eq!(up(&m), is_up);
}
