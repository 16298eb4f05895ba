#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Compare two conformance traces ("label = value" lines), ours and the
reference's, label by label.

An expectation file lists the accepted differences, one per line:

    LABEL | ours VALUE | ref VALUE | TAG

TAG is either the id of a deliberate difference in docs/DIFFERENCES.md
("D3"), which must show up exactly like that, or "pending: WHY" for a known
mismatch of a driver still to be fixed, which is accepted while it lasts
(and reported once it is gone, so that the entry gets removed).  VALUE "*"
matches any value (absence is "-").  LABEL may be a shell pattern
("created.get_* capacity*"); such an entry is accepted wherever it matches
(and only noted when it matches nothing).  Everything else must match.
"""
import argparse
import fnmatch
import re
import sys


def parse_trace(path):
    items = {}
    order = []
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        label, sep, value = line.partition(" = ")
        if not sep:
            label, value = line, "?"
        key = label
        n = 2
        while key in items:
            key = f"{label} #{n}"
            n += 1
        items[key] = value
        order.append(key)
    return items, order


def parse_expected(path, known_ids):
    entries = {}
    errors = []
    for no, line in enumerate(open(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        if (len(parts) != 4 or not parts[1].startswith("ours ")
                or not parts[2].startswith("ref ")):
            errors.append(f"{path}:{no}: malformed: {line}")
            continue
        label, ours, ref, tag = parts[0], parts[1][5:], parts[2][4:], parts[3]
        if not (tag.startswith("pending:") or tag in known_ids):
            errors.append(f"{path}:{no}: tag '{tag}' is neither 'pending: "
                          f"...' nor an id in docs/DIFFERENCES.md")
        entries[label] = (ours, ref, tag)
    return entries, errors


def matches(pattern, value):
    return pattern == "*" or pattern == value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--expected")
    ap.add_argument("--differences")
    ap.add_argument("ours")
    ap.add_argument("ref")
    a = ap.parse_args()

    known_ids = set()
    if a.differences:
        try:
            known_ids = set(re.findall(r"^#+\s*(D\d+)\b",
                                       open(a.differences).read(), re.M))
        except OSError:
            pass
    expected, errors = {}, []
    if a.expected:
        try:
            expected, errors = parse_expected(a.expected, known_ids)
        except FileNotFoundError:
            pass

    ours, ours_order = parse_trace(a.ours)
    ref, ref_order = parse_trace(a.ref)
    if ref.get("end") != "ok":
        errors.append("the reference run did not reach its end: "
                      f"died = {ref.get('died', '?')}, exit = "
                      f"{ref.get('exit', '?')}")

    labels = list(ref_order) + [k for k in ours_order if k not in ref]
    seen = set()
    mismatches = []
    accepted = []
    for label in labels:
        o, r = ours.get(label, "-"), ref.get(label, "-")
        if o == r:
            continue
        keys = [k for k in expected if k == label or (
            any(c in k for c in "*?[") and fnmatch.fnmatchcase(label, k))]
        hit = next((k for k in keys if matches(expected[k][0], o)
                    and matches(expected[k][1], r)), None)
        if hit:
            seen.add(hit)
            accepted.append(f"  {label}: ours {o}, libblkio {r}  "
                            f"[{expected[hit][2]}]")
            continue
        mismatches.append(f"  {label}\n      ours:     {o}\n"
                          f"      libblkio: {r}")

    for label, (eo, er, tag) in expected.items():
        if label in seen:
            continue
        if any(c in label for c in "*?["):
            print(f"note: pattern matches no difference, remove it from "
                  f"{a.expected}: {label} [{tag}]")
            continue
        if tag.startswith("pending:"):
            print(f"note: expected difference now matches, remove it from "
                  f"{a.expected}: {label} [{tag}]")
        else:
            errors.append(f"deliberate difference {tag} not seen: {label} "
                          f"(ours {ours.get(label, '-')}, libblkio "
                          f"{ref.get(label, '-')}, expected ours {eo} ref {er})")

    print(f"{a.name}: {len(ref_order)} observations on libblkio 1.5, "
          f"{len(ours_order)} on ours, {len(accepted)} accepted differences")
    for line in accepted:
        print(line)
    if mismatches:
        print(f"{a.name}: {len(mismatches)} unexpected differences:")
        for m in mismatches:
            print(m)
    for e in errors:
        print(f"{a.name}: {e}")
    return 1 if mismatches or errors else 0


if __name__ == "__main__":
    sys.exit(main())
