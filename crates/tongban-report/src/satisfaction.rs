//! Satisfaction per acceptance office (好差评): the evaluations applicants
//! gave, recorded by the acceptance office in the period — their number, mean
//! score, the count of each score 1–5 and the share of 4 and 5 (满意率),
//! which feed the assessment of the office's staff.
//!
//! An office is in the region when the case's acceptance township is. A
//! score outside 1–5 (which a verified chain should never carry) is left out.

use std::collections::BTreeMap;

use serde::Serialize;
use tongban_domain::supervision::{Evaluation, SupervisedCase};

use crate::{DrillReport, DrillRow, DrillStatus, Report, Scope, percent, ratio};

/// One acceptance office's evaluations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SatisfactionRow {
    /// The acceptance office's id (`合计` in the total).
    pub office: String,
    /// Evaluations recorded in the period.
    pub evaluations: u64,
    /// Mean score, rounded to 2 decimals; none without evaluations.
    pub mean_score: Option<f64>,
    /// Scores of 1.
    pub score_1: u64,
    /// Scores of 2.
    pub score_2: u64,
    /// Scores of 3.
    pub score_3: u64,
    /// Scores of 4.
    pub score_4: u64,
    /// Scores of 5.
    pub score_5: u64,
    /// Share of scores 4 and 5 (满意率).
    pub satisfied_rate: Option<f64>,
}

impl SatisfactionRow {
    fn add(&mut self, score: u8) {
        self.evaluations += 1;
        match score {
            1 => self.score_1 += 1,
            2 => self.score_2 += 1,
            3 => self.score_3 += 1,
            4 => self.score_4 += 1,
            _ => self.score_5 += 1,
        }
    }

    fn finish(&mut self) {
        let sum = self.score_1
            + 2 * self.score_2
            + 3 * self.score_3
            + 4 * self.score_4
            + 5 * self.score_5;
        self.mean_score = ratio(sum, self.evaluations).map(|m| (m * 100.0).round() / 100.0);
        self.satisfied_rate = ratio(self.score_4 + self.score_5, self.evaluations);
    }
}

/// The satisfaction report of a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SatisfactionReport {
    /// What it covers.
    pub scope: Scope,
    /// One row per acceptance office, by office id.
    pub rows: Vec<SatisfactionRow>,
    /// Over every row.
    pub total: SatisfactionRow,
}

fn evaluations<'a>(
    cases: &'a [SupervisedCase],
    scope: &'a Scope,
) -> impl Iterator<Item = (&'a SupervisedCase, &'a Evaluation)> + 'a {
    cases
        .iter()
        .filter(|case| scope.region.contains(&case.acceptance))
        .filter_map(|case| Some((case, case.evaluation.as_ref()?)))
        .filter(|(_, e)| (1..=5).contains(&e.score) && scope.period.contains(e.at.china_date()))
}

/// Evaluations per acceptance office in `scope`.
pub fn satisfaction_report(cases: &[SupervisedCase], scope: &Scope) -> SatisfactionReport {
    let mut rows: BTreeMap<&str, SatisfactionRow> = BTreeMap::new();
    let mut total = SatisfactionRow {
        office: "合计".to_string(),
        ..SatisfactionRow::default()
    };
    for (_, evaluation) in evaluations(cases, scope) {
        rows.entry(&evaluation.office)
            .or_insert_with(|| SatisfactionRow {
                office: evaluation.office.clone(),
                ..SatisfactionRow::default()
            })
            .add(evaluation.score);
        total.add(evaluation.score);
    }
    let mut rows: Vec<SatisfactionRow> = rows.into_values().collect();
    rows.iter_mut().for_each(SatisfactionRow::finish);
    total.finish();
    SatisfactionReport {
        scope: scope.clone(),
        rows,
        total,
    }
}

/// The evaluated cases behind one office's row of [`satisfaction_report`].
pub fn satisfaction_cases(cases: &[SupervisedCase], scope: &Scope, office: &str) -> DrillReport {
    DrillReport::sorted(
        evaluations(cases, scope)
            .filter(|(_, e)| e.office == office)
            .map(|(case, e)| {
                let mut row = DrillRow::new(
                    &case.case,
                    DrillStatus::Evaluated,
                    Some(e.at.china_date()),
                    None,
                );
                row.score = Some(e.score);
                row
            })
            .collect(),
    )
}

impl Report for SatisfactionReport {
    type Row = SatisfactionRow;
    const CSV_HEADER: &'static [&'static str] = &[
        "office",
        "evaluations",
        "mean_score",
        "score_1",
        "score_2",
        "score_3",
        "score_4",
        "score_5",
        "satisfied_rate",
    ];
    const ZH_HEADER: &'static [&'static str] = &[
        "受理窗口",
        "评价数",
        "平均分",
        "1分",
        "2分",
        "3分",
        "4分",
        "5分",
        "满意率",
    ];

    fn rows(&self) -> &[SatisfactionRow] {
        &self.rows
    }

    fn zh_cells(row: &SatisfactionRow) -> Vec<String> {
        vec![
            row.office.clone(),
            row.evaluations.to_string(),
            row.mean_score
                .map_or_else(|| "-".to_string(), |m| format!("{m:.2}")),
            row.score_1.to_string(),
            row.score_2.to_string(),
            row.score_3.to_string(),
            row.score_4.to_string(),
            row.score_5.to_string(),
            percent(row.satisfied_rate),
        ]
    }

    fn zh_footer(&self) -> Vec<Vec<String>> {
        vec![Self::zh_cells(&self.total)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{at, case, d, serde_header};
    use crate::{Period, Region};

    fn scope(region: &str) -> Scope {
        Scope::new(
            Region::parse(region).unwrap(),
            Period::new(d("2026-11-01"), d("2026-11-30")).unwrap(),
            d("2026-12-10"),
        )
    }

    fn evaluated(id: &str, acceptance: &str, score: u8, date: &str) -> SupervisedCase {
        let mut c = case(id, acceptance, "130102001");
        c.evaluation = Some(Evaluation {
            score,
            office: acceptance.to_string(),
            at: at(date),
        });
        c
    }

    fn cases() -> Vec<SupervisedCase> {
        vec![
            evaluated("440106001-20261101-AAAAAA", "440106001", 5, "2026-11-10"),
            evaluated("440106001-20261101-BBBBBB", "440106001", 4, "2026-11-11"),
            evaluated("440106001-20261101-CCCCCC", "440106001", 2, "2026-11-12"),
            evaluated("440106001-20261001-DDDDDD", "440106001", 1, "2026-10-30"),
            evaluated("130102001-20261101-EEEEEE", "130102001", 3, "2026-11-30"),
            evaluated("130102001-20261101-FFFFFF", "130102001", 9, "2026-11-30"),
            case("130102001-20261101-GGGGGG", "130102001", "130102001"),
        ]
    }

    #[test]
    fn scores_per_office() {
        let report = satisfaction_report(&cases(), &scope("00"));
        assert_eq!(report.rows.len(), 2);
        let sjz = &report.rows[0];
        assert_eq!(
            (sjz.office.as_str(), sjz.evaluations, sjz.score_3),
            ("130102001", 1, 1)
        );
        assert_eq!(sjz.satisfied_rate, Some(0.0));
        let gz = &report.rows[1];
        assert_eq!(gz.evaluations, 3);
        assert_eq!(
            (gz.score_2, gz.score_4, gz.score_5, gz.score_1),
            (1, 1, 1, 0)
        );
        assert_eq!(gz.mean_score, Some(3.67));
        assert_eq!(gz.satisfied_rate, Some(2.0 / 3.0));
        assert_eq!(report.total.evaluations, 4);
        assert_eq!(report.total.mean_score, Some(3.5));
        // The region is the acceptance office's, not the domicile's.
        assert_eq!(
            satisfaction_report(&cases(), &scope("44"))
                .total
                .evaluations,
            3
        );
        assert_eq!(
            satisfaction_report(&cases(), &scope("130102"))
                .total
                .evaluations,
            1
        );
    }

    #[test]
    fn drill_down_and_renderings() {
        let drill = satisfaction_cases(&cases(), &scope("00"), "440106001");
        let scores: Vec<Option<u8>> = drill.rows.iter().map(|r| r.score).collect();
        assert_eq!(scores, [Some(5), Some(4), Some(2)]);
        let report = satisfaction_report(&cases(), &scope("00"));
        assert_eq!(
            serde_header::<SatisfactionReport>(&report.total),
            SatisfactionReport::CSV_HEADER.join(",")
        );
        let table = report.table();
        assert_eq!(
            table[2],
            ["440106001", "3", "3.67", "0", "1", "0", "1", "1", "66.7%"]
        );
        assert_eq!(table[3][0], "合计");
    }
}
