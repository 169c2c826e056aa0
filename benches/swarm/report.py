"""Tables for the swarm benchmark: medians with min and max, and ratios to
the libtorrent (or mktorrent) counterpart measured in the same run."""

import statistics

MB = 1e6
MIB = 1024 * 1024

# For each transfer, the counterparts it is compared with; with several,
# the one with the best median throughput is used ("best libtorrent
# configuration").
BASELINES = {
    "bittern→bittern": ["libtorrent→libtorrent"],
    "libtorrent→bittern": ["libtorrent→libtorrent"],
    "bittern→libtorrent": ["libtorrent→libtorrent"],
    "bittern→aria2c": ["libtorrent→aria2c", "libtorrent-reqq→aria2c"],
    "libtorrent-reqq→aria2c": ["libtorrent→aria2c"],
    "bittern→transmission": ["libtorrent→transmission", "libtorrent-reqq→transmission"],
    "libtorrent-reqq→transmission": ["libtorrent→transmission"],
    "bittern→4×bittern": ["libtorrent→4×libtorrent"],
    "bittern-rc4→bittern-rc4": ["libtorrent-rc4→libtorrent-rc4"],
    "bittern-utp→bittern-utp": ["libtorrent-utp→libtorrent-utp"],
    "bittern-utp-nogso→bittern-utp-nogso": ["bittern-utp→bittern-utp"],
    "bittern-utp-nogro→bittern-utp-nogro": ["bittern-utp→bittern-utp"],
    # `--bittern-old`: an older build against libtorrent, and the current
    # build against the older one, in the same run.
    "bittern-old→bittern-old": ["libtorrent→libtorrent"],
    "bittern-old→4×bittern-old": ["libtorrent→4×libtorrent"],
    "bittern-old-utp→bittern-old-utp": ["libtorrent-utp→libtorrent-utp"],
}

# Extra rows for `--bittern-old`: the current build against the older one.
OLD_BASELINES = {
    "bittern→bittern": "bittern-old→bittern-old",
    "bittern→4×bittern": "bittern-old→4×bittern-old",
    "bittern-utp→bittern-utp": "bittern-old-utp→bittern-old-utp",
}

# Extra rows for `--v2`: each transfer on a v2-only torrent against the
# same transfer on the v1 torrent of the same data and piece size (and,
# with `--bittern-old`, the current build's v2 transfer against the older
# one's).
V2_BASELINES = {name + " (v2)": name for name in
                ["bittern→bittern", "libtorrent→libtorrent", "libtorrent→bittern",
                 "bittern→libtorrent", "bittern-old→bittern-old"]}
OLD_V2_BASELINES = {"bittern→bittern (v2)": "bittern-old→bittern-old (v2)"}

TRANSFER_FIELDS = [
    # key, header, scale, format
    ("wall", "wall s", 1, "%.2f"),
    ("mbps", "MB/s", 1, "%.0f"),
    ("lcpu", "leecher CPU s", 1, "%.2f"),
    ("scpu", "seeder CPU s", 1, "%.2f"),
    ("luser", "leecher user s", 1, "%.2f"),
    ("lsys", "leecher sys s", 1, "%.2f"),
    ("suser", "seeder user s", 1, "%.2f"),
    ("ssys", "seeder sys s", 1, "%.2f"),
    ("lanon", "leecher RssAnon MiB", MIB, "%.0f"),
    ("lfile", "leecher RssFile MiB", MIB, "%.0f"),
    ("sanon", "seeder RssAnon MiB", MIB, "%.0f"),
]


def summary(values):
    vals = [v for v in values if v == v]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt_summary(s, scale, fmt):
    if s is None:
        return "—"
    med, lo, hi = (x / scale for x in s)
    if lo == hi:
        return fmt % med
    return (fmt + " (" + fmt + "–" + fmt + ")") % (med, lo, hi)


def median_of(runs, key):
    s = summary([r.get(key, float("nan")) for r in runs if r["ok"]])
    return None if s is None else s[0]


def transfer_table(label, results):
    """results: list of (name, runs) in display order."""
    head = ["transfer", "ok"] + [h for _, h, _, _ in TRANSFER_FIELDS]
    lines = ["#### " + label, "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for name, runs in results:
        ok = [r for r in runs if r["ok"]]
        cells = [name, "%d/%d" % (len(ok), len(runs))]
        for key, _, scale, fmt in TRANSFER_FIELDS:
            cells.append(fmt_summary(summary([r.get(key, float("nan")) for r in ok]), scale, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return "%.2f" % (a / b)


def pick_baseline(name, by_name):
    cands = [c for c in BASELINES.get(name, []) if c in by_name]
    cands = [c for c in cands if median_of(by_name[c], "mbps") is not None]
    if not cands:
        return None
    return max(cands, key=lambda c: median_of(by_name[c], "mbps"))


def ratio_table(label, results):
    by_name = dict(results)
    head = ["transfer", "vs (same run)", "MB/s ×", "wall ×", "total CPU ×",
            "leecher CPU ×", "seeder CPU ×", "leecher RssAnon ×", "leecher RssFile ×"]
    lines = ["#### " + label + " — ratios (medians; MB/s × > 1 and the others < 1 favour the first)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pairs = [(name, pick_baseline(name, by_name)) for name, _ in results]
    extra = list(OLD_BASELINES.items()) + list(V2_BASELINES.items()) + list(OLD_V2_BASELINES.items())
    pairs += [(name, base) for name, base in extra
              if name in by_name and base in by_name
              and median_of(by_name[base], "mbps") is not None]
    for name, base in pairs:
        if base is not None:
            lines.append(ratio_row(name, by_name[name], base, by_name[base]))
    return lines


def ratio_row(name, runs, base, b):
    """One row of `ratio_table`: transfer `name` (its `runs`) against `base` (`b`)."""
    m = lambda rs, k: median_of(rs, k)
    tot = lambda rs: None if m(rs, "lcpu") is None else m(rs, "lcpu") + m(rs, "scpu")
    cells = [name, base, ratio(m(runs, "mbps"), m(b, "mbps")),
             ratio(m(runs, "wall"), m(b, "wall")), ratio(tot(runs), tot(b)),
             ratio(m(runs, "lcpu"), m(b, "lcpu")), ratio(m(runs, "scpu"), m(b, "scpu")),
             ratio(m(runs, "lanon"), m(b, "lanon")), ratio(m(runs, "lfile"), m(b, "lfile"))]
    return "| " + " | ".join(cells) + " |"


def tool_table(label, rows, mk_name, lt_names):
    """rows: list of (name, runs) with keys wall, mbps, cpu, ok. Every row
    gets ratios to mktorrent (mk_name) and to its libtorrent counterpart
    (lt_names[name])."""
    by_name = dict(rows)
    head = ["tool", "ok", "wall s", "MB/s", "CPU s", "user s", "sys s", "MB/s × mktorrent",
            "CPU × mktorrent", "user × mktorrent", "sys × mktorrent",
            "libtorrent counterpart", "MB/s × it", "CPU × it"]
    lines = ["#### " + label, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in rows:
        ok = [r for r in runs if r["ok"]]
        cells = [name, "%d/%d" % (len(ok), len(runs)),
                 fmt_summary(summary([r["wall"] for r in ok]), 1, "%.3f"),
                 fmt_summary(summary([r["mbps"] for r in ok]), 1, "%.0f"),
                 fmt_summary(summary([r["cpu"] for r in ok]), 1, "%.2f"),
                 # Older raw results have no user/sys split.
                 fmt_summary(summary([r.get("user", float("nan")) for r in ok]), 1, "%.2f"),
                 fmt_summary(summary([r.get("sys", float("nan")) for r in ok]), 1, "%.2f")]
        for base in (mk_name, lt_names.get(name)):
            if base in by_name and base != name:
                b = by_name[base]
                if base != mk_name:
                    cells.append(base)
                cells += [ratio(median_of(runs, "mbps"), median_of(b, "mbps")),
                          ratio(median_of(runs, "cpu"), median_of(b, "cpu"))]
                if base == mk_name:
                    cells += [ratio(median_of(runs, "user"), median_of(b, "user")),
                              ratio(median_of(runs, "sys"), median_of(b, "sys"))]
            else:
                cells += ["—", "—", "—", "—"] if base == mk_name else ["—", "—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
