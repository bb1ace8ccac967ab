//! The bench's statistics: medians and interquartile ranges of per-pair ratios, the
//! median's uncertainty (McGill's notch), and the verdicts written in BENCHMARKS.md — a
//! verdict the run cannot resolve says so instead of naming a winner.

/// First quartile, median and third quartile of `v` (linear interpolation).
pub fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let i = q * (v.len() - 1) as f64;
        let (lo, hi) = (i.floor() as usize, i.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (i - lo as f64)
    };
    (at(0.25), at(0.5), at(0.75))
}

/// Half-width of the median's approximate 95 % interval over `v` (McGill's notch:
/// 1.58 × IQR ÷ √n).
pub fn notch(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let (q1, _, q3) = quartiles(v.to_vec());
    1.58 * (q3 - q1) / (v.len() as f64).sqrt()
}

/// Below this many pairs a verdict is never "resolved".
pub const MIN_PAIRS: usize = 5;

/// `**median** (q1–q3)`, or a dash for no runs.
pub fn fmt_ratio(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (q1, m, q3) = quartiles(v.to_vec());
    format!("**{m:.3}** ({q1:.3}–{q3:.3})")
}

/// The verdict on one workload: the agent's ratios (`ours`, one per pair) against
/// `target`, and against auditd's ratios (`theirs`, measured in the same pairs, so
/// compared pair by pair: the difference within each pair, its median and notch). A
/// median closer to the target, or a difference closer to zero, than its own notch is
/// "not resolved by this run", whichever side it lies on; so is anything measured on
/// fewer than [`MIN_PAIRS`] pairs (their interquartile range says nothing).
pub fn verdict(ours: &[f64], theirs: &[f64], target: f64) -> String {
    if ours.is_empty() {
        return "no runs".into();
    }
    let (_, m, _) = quartiles(ours.to_vec());
    let unsure = notch(ours);
    let tag = if ours.len() < MIN_PAIRS {
        format!(" ({} pairs: not resolved by this run)", ours.len())
    } else if (m - target).abs() < unsure {
        format!(" (within ±{unsure:.3}: not resolved by this run)")
    } else {
        String::new()
    };
    let mut v = if m >= target {
        format!("met{tag}")
    } else {
        format!("**missed** by {:.3}{tag}", target - m)
    };
    let diffs: Vec<f64> = ours.iter().zip(theirs).map(|(o, t)| o - t).collect();
    if !diffs.is_empty() {
        let (_, d, _) = quartiles(diffs.clone());
        let unsure = notch(&diffs);
        if diffs.len() < ours.len() {
            v.push_str(&format!(
                "; auditd ran in {} of {} pairs",
                diffs.len(),
                ours.len()
            ));
        }
        v.push_str(&if d.abs() < unsure || diffs.len() < MIN_PAIRS {
            format!("; against auditd not resolved ({d:+.3} ± {unsure:.3} per pair)")
        } else if d > 0.0 {
            format!("; cheaper than auditd by {d:.3} (± {unsure:.3} per pair)")
        } else {
            format!("; **auditd cheaper** by {:.3} (± {unsure:.3} per pair)", -d)
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_and_the_notch_narrows_with_pairs() {
        assert_eq!(quartiles(vec![4.0, 1.0, 3.0, 2.0, 5.0]), (2.0, 3.0, 4.0));
        assert_eq!(quartiles(vec![1.0, 2.0]), (1.25, 1.5, 1.75));
        let few = [0.9, 1.0, 1.1, 1.0];
        let many: Vec<f64> = few.iter().cycle().take(16).copied().collect();
        assert!(notch(&many) < notch(&few));
        assert_eq!(notch(&[]), 0.0);
    }

    #[test]
    fn a_verdict_inside_the_notch_is_not_resolved_either_way() {
        // Tight ratios well above the target, well above auditd's.
        let ours = [1.00, 1.01, 0.99, 1.00, 1.00, 1.01, 0.99];
        let auditd = [0.50, 0.51, 0.49, 0.50, 0.50, 0.51, 0.49];
        let v = verdict(&ours, &auditd, 0.97);
        assert!(v.starts_with("met;"), "{v}");
        assert!(v.contains("cheaper than auditd by 0.500"), "{v}");
        // Wide ratios around the target, and around auditd's.
        let ours = [0.90, 1.04, 0.95, 0.99, 0.93, 1.02, 0.96];
        let auditd = [0.99, 0.95, 0.97, 0.96, 0.99, 0.98, 0.97];
        let v = verdict(&ours, &auditd, 0.97);
        assert!(v.contains("**missed** by 0.010 (within ±"), "{v}");
        assert!(v.contains("not resolved by this run"), "{v}");
        assert!(v.contains("against auditd not resolved"), "{v}");
        // Clearly dearer than auditd.
        let theirs: Vec<f64> = ours.iter().map(|o| o + 0.05).collect();
        let v = verdict(&ours, &theirs, 0.90);
        assert!(v.contains("**auditd cheaper** by 0.050"), "{v}");
        // No auditd runs: the target alone.
        assert_eq!(verdict(&[1.0; 7], &[], 0.99), "met");
        // Too few pairs to say, however tight; auditd stopped after two pairs.
        let v = verdict(&[1.0; 3], &[0.5; 2], 0.99);
        assert!(v.starts_with("met (3 pairs: not resolved"), "{v}");
        assert!(
            v.contains("auditd ran in 2 of 3 pairs; against auditd not resolved"),
            "{v}"
        );
    }
}
