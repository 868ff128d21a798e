//! The fault suite's summary table: one row per case, printed at the end of a run.

/// One case's figures.
#[derive(Debug, Clone, Default)]
pub struct CaseRow {
    /// Case name, e.g. `2 power-cut node4`.
    pub case: String,
    /// `PASS`, `FAIL: why` or `MISSING: why`.
    pub result: String,
    /// Longest time no acknowledged write completed on the writers after the fault, seconds.
    pub stall_s: Option<f64>,
    /// Time from the node's return (or the fault's end) to heal pending 0, seconds.
    pub heal_s: Option<f64>,
    /// Bytes of acknowledged writes missing or wrong on any node.
    pub lost_bytes: u64,
    /// `gluster volume heal VOL info split-brain` entries.
    pub split_brain: u64,
    /// Files differing between bricks after heal.
    pub brick_diffs: usize,
}

fn opt(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into())
}

/// Renders `rows` as a fixed-width text table.
pub fn render(rows: &[CaseRow]) -> String {
    let mut out = format!(
        "{:<34} {:>8} {:>8} {:>10} {:>11} {:>11}  {}\n",
        "case", "stall_s", "heal_s", "lost_bytes", "split_brain", "brick_diffs", "result"
    );
    for r in rows {
        out += &format!(
            "{:<34} {:>8} {:>8} {:>10} {:>11} {:>11}  {}\n",
            r.case,
            opt(r.stall_s),
            opt(r.heal_s),
            r.lost_bytes,
            r.split_brain,
            r.brick_diffs,
            r.result
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_row_per_case() {
        let t = super::render(&[super::CaseRow {
            case: "2 power-cut".into(),
            result: "PASS".into(),
            stall_s: Some(5.25),
            ..Default::default()
        }]);
        assert_eq!(t.lines().count(), 2);
        assert!(t.contains("2 power-cut") && t.contains("5.2") && t.contains("PASS"));
    }
}
