"""The supervision reports over a Tongban Parquet export, with DuckDB.

Usage: python3 push.py DIR REGION FROM TO AS_OF

Prints {"push": [...], "review": [...], "backlog": [...], "disbursement":
[...], "satisfaction": [...]} as JSON on stdout: the same rows as
tongban_report's reports (docs/analytics.md has the same SQL). Exits 3 when the duckdb module is missing, so the Rust test can tell
"not installed" from a failure.
"""

import datetime
import json
import sys

try:
    import duckdb
except ImportError:
    print("the duckdb Python module is not installed (pip install duckdb)", file=sys.stderr)
    sys.exit(3)

PUSH = """
WITH steps AS (
  SELECT * FROM read_parquet($steps, hive_partitioning = true,
                             hive_types = {'province': VARCHAR, 'month': VARCHAR})
), cases AS (
  SELECT * FROM read_parquet($cases, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
), pushes AS (
  SELECT office, min(acceptance) AS township,
         count(*) AS pushed,
         count(*) FILTER (WHERE NOT late) AS on_time,
         count(*) FILTER (WHERE late) AS late,
         count(*) FILTER (WHERE provisional) AS provisional
  FROM steps
  WHERE from_stage = 'accepted' AND to_stage = 'pushed'
    AND at_date BETWEEN $from AND $to
    AND ($region = '00' OR starts_with(acceptance, $region))
  GROUP BY office
), overdue AS (
  SELECT coalesce(nullif(pending_office, ''), acceptance_office) AS office,
         min(acceptance) AS township,
         count(*) AS overdue_now
  FROM cases
  WHERE stage = 'accepted' AND pending_deadline < $as_of
    AND ($region = '00' OR starts_with(acceptance, $region))
  GROUP BY 1
)
SELECT office,
       coalesce(p.township, o.township) AS township,
       coalesce(pushed, 0) AS pushed,
       coalesce(on_time, 0) AS on_time,
       coalesce(late, 0) AS late,
       CASE WHEN coalesce(pushed, 0) > 0 THEN on_time / pushed END AS on_time_rate,
       coalesce(provisional, 0) AS provisional,
       coalesce(overdue_now, 0) AS overdue_now
FROM pushes p FULL OUTER JOIN overdue o USING (office)
ORDER BY office
"""

REVIEW = """
WITH steps AS (
  SELECT * FROM read_parquet($steps, hive_partitioning = true,
                             hive_types = {'province': VARCHAR, 'month': VARCHAR})
), cases AS (
  SELECT * FROM read_parquet($cases, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
), role_of(stage, role, zh) AS (
  VALUES ('received', 'township', '乡镇（街道）受理窗口'),
         ('publicized', 'township', '乡镇（街道）受理窗口'),
         ('initial_reviewed', 'county_dpf', '县级残联'),
         ('dpf_reviewed', 'county_civil_affairs', '县级民政部门')
), reviews AS (
  SELECT r.role, s.domicile_county AS county,
         CASE WHEN r.role = 'township' AND s.office <> '' THEN s.office
              ELSE s.domicile_county || ' ' || r.zh END AS office,
         count(*) AS reviewed,
         count(*) FILTER (WHERE NOT s.late) AS on_time,
         count(*) FILTER (WHERE s.late) AS late,
         count(*) FILTER (WHERE s.provisional) AS provisional
  FROM steps s JOIN role_of r ON s.from_stage = r.stage
  WHERE s.to_stage IN ('initial_reviewed', 'dpf_reviewed', 'decided', 'returned', 'rejected')
    AND s.at_date BETWEEN $from AND $to
    AND ($region = '00' OR starts_with(s.domicile, $region))
  GROUP BY 1, 2, 3
), overdue AS (
  SELECT r.role, c.domicile_county AS county,
         CASE WHEN r.role = 'township' AND c.pending_office <> '' THEN c.pending_office
              ELSE c.domicile_county || ' ' || r.zh END AS office,
         count(*) AS overdue_now
  FROM cases c JOIN role_of r ON c.stage = r.stage
  WHERE c.pending_deadline < $as_of
    AND ($region = '00' OR starts_with(c.domicile, $region))
  GROUP BY 1, 2, 3
)
SELECT role, county, office,
       coalesce(reviewed, 0) AS reviewed,
       coalesce(on_time, 0) AS on_time,
       coalesce(late, 0) AS late,
       CASE WHEN coalesce(reviewed, 0) > 0 THEN on_time / reviewed END AS on_time_rate,
       coalesce(provisional, 0) AS provisional,
       coalesce(overdue_now, 0) AS overdue_now
FROM reviews FULL OUTER JOIN overdue USING (role, county, office)
ORDER BY role, county, office
"""

BACKLOG = """
WITH cases AS (
  SELECT * FROM read_parquet($cases, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
), stages(stage, position) AS (
  VALUES ('draft', 0), ('accepted', 1), ('pushed', 2), ('received', 3),
         ('publicized', 4), ('initial_reviewed', 5), ('dpf_reviewed', 6),
         ('decided', 7), ('result_received', 8), ('notified', 9),
         ('returned', 10), ('rejected', 11)
)
SELECT c.stage,
       count(*) AS cases,
       count(*) FILTER (WHERE c.pending_deadline < $as_of) AS overdue,
       min(c.entered_date) AS oldest_entered,
       first(c.case_id ORDER BY c.entered_at, c.case_id) AS oldest_case
FROM cases c JOIN stages s ON c.stage = s.stage
WHERE (c.stage <> 'notified' OR c.approved)
  AND ($region = '00' OR starts_with(c.acceptance, $region)
       OR starts_with(c.domicile, $region))
GROUP BY c.stage, s.position
ORDER BY s.position
"""

DISBURSEMENT = """
WITH steps AS (
  SELECT * FROM read_parquet($steps, hive_partitioning = true,
                             hive_types = {'province': VARCHAR, 'month': VARCHAR})
), cases AS (
  SELECT * FROM read_parquet($cases, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
), payroll AS (
  SELECT * FROM read_parquet($payroll, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
), months AS (
  SELECT strftime(m, '%Y-%m') AS month, last_day(m)::DATE AS month_end
  FROM range(date_trunc('month', $from), date_trunc('month', $to) + INTERVAL 1 MONTH,
             INTERVAL 1 MONTH) AS t(m)
), at_end AS (
  -- each case's stage at the end of each month, and whether it was decided
  SELECT s.case_id, m.month,
         arg_max(s.to_stage, s.seq) AS stage,
         bool_or(s.to_stage = 'decided') AS decided
  FROM steps s JOIN months m ON s.at_date <= m.month_end
  WHERE $cregion = '00' OR starts_with(s.domicile, $cregion)
  GROUP BY s.case_id, m.month
), entitled AS (
  SELECT c.domicile_county AS county, a.month, k.kind, count(*) AS entitled
  FROM cases c
  JOIN at_end a ON a.case_id = c.case_id
  JOIN (VALUES ('living'), ('nursing')) AS k(kind)
    ON (k.kind = 'living' AND c.living_yuan IS NOT NULL)
    OR (k.kind = 'nursing' AND c.nursing_yuan IS NOT NULL)
  WHERE c.first_paid_month <= a.month
    AND (a.stage = 'active'
         OR (a.stage IN ('decided', 'result_received', 'notified') AND a.decided))
  GROUP BY ALL
), paid AS (
  SELECT county, month, kind, sum(people) AS paid_people, sum(months) AS paid_months,
         sum(yuan) AS paid_yuan, sum(back_months) AS back_months,
         sum(back_yuan) AS back_yuan
  FROM payroll
  WHERE month IN (SELECT month FROM months)
    AND ($cregion = '00' OR starts_with(county, $cregion))
  GROUP BY ALL
)
SELECT county, month, kind,
       coalesce(entitled, 0) AS entitled,
       paid.paid_people IS NOT NULL AS reported,
       coalesce(paid_people, 0) AS paid_people,
       coalesce(paid_months, 0) AS paid_months,
       coalesce(paid_yuan, 0) AS paid_yuan,
       coalesce(back_months, 0) AS back_months,
       coalesce(back_yuan, 0) AS back_yuan,
       CASE WHEN entitled > 0 THEN coalesce(paid_people, 0) / entitled END AS progress
FROM entitled FULL OUTER JOIN paid USING (county, month, kind)
ORDER BY county, month, kind
"""

SATISFACTION = """
WITH cases AS (
  SELECT * FROM read_parquet($cases, hive_partitioning = true,
                             hive_types = {'province': VARCHAR})
)
SELECT evaluation_office AS office,
       count(*) AS evaluations,
       round(avg(evaluation_score), 2) AS mean_score,
       count(*) FILTER (WHERE evaluation_score = 1) AS score_1,
       count(*) FILTER (WHERE evaluation_score = 2) AS score_2,
       count(*) FILTER (WHERE evaluation_score = 3) AS score_3,
       count(*) FILTER (WHERE evaluation_score = 4) AS score_4,
       count(*) FILTER (WHERE evaluation_score = 5) AS score_5,
       avg(CASE WHEN evaluation_score >= 4 THEN 1 ELSE 0 END) AS satisfied_rate
FROM cases
WHERE evaluation_score BETWEEN 1 AND 5
  AND evaluation_date BETWEEN $from AND $to
  AND ($region = '00' OR starts_with(acceptance, $region))
GROUP BY evaluation_office
ORDER BY office
"""


def rows(con, sql, params):
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    directory, region, date_from, date_to, as_of = sys.argv[1:]
    params = {
        "steps": f"{directory}/steps/**/*.parquet",
        "cases": f"{directory}/cases/**/*.parquet",
        "payroll": f"{directory}/payroll/**/*.parquet",
        "region": region,
        # payroll is per county: a township region is its county
        "cregion": region[:6],
        "from": date_from,
        "to": date_to,
        "as_of": as_of,
    }
    con = duckdb.connect()
    out = {}
    for name, sql in (
        ("push", PUSH),
        ("review", REVIEW),
        ("backlog", BACKLOG),
        ("disbursement", DISBURSEMENT),
        ("satisfaction", SATISFACTION),
    ):
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        # Dates as DATE values so that comparisons with DATE columns are typed.
        for key in ("from", "to", "as_of"):
            if key in used:
                used[key] = datetime.date.fromisoformat(used[key])
        out[name] = rows(con, sql, used)
    json.dump(out, sys.stdout, ensure_ascii=False, default=str)


if __name__ == "__main__":
    main()
