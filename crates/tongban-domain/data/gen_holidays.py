#!/usr/bin/env python3
"""Regenerate holidays.txt from holiday-cn JSON files (one a year).

Usage: gen_holidays.py [SOURCE_DIR] [OUTPUT] [FIRST_YEAR LAST_YEAR]
  SOURCE_DIR defaults to /work/shared/data/holidays-cn; OUTPUT to holidays.txt beside
  this script; years default to 2021..2026 (2027 was not published when taken).

The output is the format that `Calendar::to_text` writes (see
crates/tongban-domain/src/calendar.rs); a unit test checks that the shipped file is
exactly the header followed by `to_text` of each year. A node can import a newer
holiday-cn file itself with `Calendar::import_holiday_cn_json`.
"""
import datetime
import json
import os
import sys

HEADER = """\
# Tongban working-day calendar: China's public holidays and adjusted working days.
# Source: the State Council General Office's yearly notices, as compiled by the
# holiday-cn project (MIT); regenerate with gen_holidays.py. Embedded by
# crates/tongban-domain/src/calendar.rs.
#
# Format (UTF-8, one statement per line; blank lines and '#' lines are ignored):
#   year YYYY                  starts the published schedule of one year; that year
#                              is then "covered"
#   paper URL                  the notice the schedule comes from (zero or more)
#   off DATE NAME              a public holiday (rest day)
#   work DATE NAME             an adjusted working day (调休), usually a weekend
# DATE is YYYY-MM-DD or FIRST..LAST (inclusive, consecutive days of one holiday).
# A schedule may list dates of the neighbouring years (the 2023 notice lists
# 2022-12-31). Every other date of a covered year is a working day Monday to Friday
# and a rest day on Saturday and Sunday. A year without a `year` block is not
# covered: its dates are never silently treated as ordinary.
"""


def year_text(data):
    year = data["year"]
    out = [f"year {year}\n"]
    out += [f"paper {p}\n" for p in data["papers"]]
    days = sorted((datetime.date.fromisoformat(d["date"]), d["isOffDay"], d["name"])
                  for d in data["days"])
    runs = []  # [first, last, off, name]
    for date, off, name in days:
        if runs and runs[-1][2] == off and runs[-1][3] == name \
                and runs[-1][1] + datetime.timedelta(days=1) == date:
            runs[-1][1] = date
        else:
            runs.append([date, date, off, name])
    for first, last, off, name in runs:
        kind = "off" if off else "work"
        span = first.isoformat() if first == last else f"{first}..{last}"
        out.append(f"{kind} {span} {name}\n")
    return "".join(out)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/holidays-cn"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "holidays.txt")
    first, last = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (2021, 2026)
    parts = [HEADER]
    for year in range(first, last + 1):
        with open(os.path.join(src, f"{year}.json"), encoding="utf-8") as f:
            data = json.load(f)
        if not data["days"]:
            raise SystemExit(f"{year} is not published")
        parts.append("\n" + year_text(data))
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(parts))


if __name__ == "__main__":
    main()
