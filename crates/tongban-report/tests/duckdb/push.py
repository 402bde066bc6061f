"""Push and review timeliness over a Tongban Parquet export, with DuckDB.

Usage: python3 push.py DIR REGION FROM TO AS_OF

Prints {"push": [...], "review": [...]} as JSON on stdout: the same rows as
tongban_report's push_report and review_report (docs/analytics.md has the
SQL). Exits 3 when the duckdb module is missing, so the Rust test can tell
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
        "region": region,
        "from": date_from,
        "to": date_to,
        "as_of": as_of,
    }
    con = duckdb.connect()
    out = {}
    for name, sql in (("push", PUSH), ("review", REVIEW)):
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        # Dates as DATE values so that comparisons with DATE columns are typed.
        for key in ("from", "to", "as_of"):
            if key in used:
                used[key] = datetime.date.fromisoformat(used[key])
        out[name] = rows(con, sql, used)
    json.dump(out, sys.stdout, ensure_ascii=False, default=str)


if __name__ == "__main__":
    main()
