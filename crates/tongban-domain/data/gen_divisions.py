#!/usr/bin/env python3
"""Regenerate divisions.txt from the divisions-cn CSV files.

Usage: gen_divisions.py [SOURCE_DIR] [OUTPUT]
  SOURCE_DIR defaults to /work/shared/data/divisions-cn (provinces.csv, cities.csv,
  areas.csv, streets.csv of the Administrative-divisions-of-China project);
  OUTPUT defaults to divisions.txt beside this script.

The output format is described in the header written below and in the module
documentation of crates/tongban-domain/src/division.rs. Run once when the statistical
division codes are updated; the Rust crate never reads the CSV files.
"""
import csv
import os
import re
import sys

HEADER = """\
# Tongban division table: China's administrative divisions down to townships.
# Source: National Bureau of Statistics statistical division codes (data as of 2023),
# compiled by the Administrative-divisions-of-China project (WTFPL); regenerate with
# gen_divisions.py. Embedded by crates/tongban-domain/src/division.rs.
#
# Format (UTF-8, one entry per line, lines in ascending code order as strings, so
# a province comes before its prefectures and a prefecture before its counties):
#   CODE NAME                      2-digit province or 4-digit prefecture
#   CODE NAME|TTTNAME|TTTNAME...   6-digit county (GB/T 2260), followed by its
#                                  townships: TTT is the last 3 digits of the 9-digit
#                                  township code, written right before its name
# Every prefecture's province and every county's province must be listed earlier
# (a county's 4-digit prefecture may be absent). Blank lines and lines starting with
# '#' are ignored. Names contain no '|' and no leading or trailing spaces.
"""


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def check_name(name):
    if not name or name != name.strip() or "|" in name or "\n" in name:
        raise SystemExit(f"unusable name {name!r}")
    return name


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/divisions-cn"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "divisions.txt")
    entries = {}  # code -> name, for provinces, prefectures and counties
    townships = {}  # county code -> list of (3-digit suffix, name)
    for row in read(os.path.join(src, "provinces.csv")):
        assert re.fullmatch(r"\d{2}", row["code"]), row
        entries[row["code"]] = check_name(row["name"])
    for row in read(os.path.join(src, "cities.csv")):
        assert re.fullmatch(r"\d{4}", row["code"]), row
        assert row["code"][:2] in entries, row
        entries[row["code"]] = check_name(row["name"])
    for row in read(os.path.join(src, "areas.csv")):
        assert re.fullmatch(r"\d{6}", row["code"]), row
        assert row["code"][:2] in entries, row
        entries[row["code"]] = check_name(row["name"])
        townships[row["code"]] = []
    for row in read(os.path.join(src, "streets.csv")):
        code = row["code"]
        assert re.fullmatch(r"\d{9}", code), row
        assert code[:6] in townships, row
        townships[code[:6]].append((code[6:], check_name(row["name"])))
    lines = [HEADER]
    for code in sorted(entries):
        line = f"{code} {entries[code]}"
        if len(code) == 6:
            towns = sorted(townships[code])
            assert len({t for t, _ in towns}) == len(towns), code
            line += "".join(f"|{suffix}{name}" for suffix, name in towns)
        lines.append(line + "\n")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
