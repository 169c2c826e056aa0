#!/usr/bin/python3
"""Draws a daemon soak's samples.csv (daemon_soak.py) into a PNG: threads,
fds, RSS and RssAnon, CPU and the torrent count over time, a dashed line
at each restart (SIGKILL), the baseline of the empty daemon dotted. With a
census.csv (runs since session 15), the threads panel also shows the peer
threads: writers (`pw-`, which dial and handshake before a reader exists)
and readers (`pr-`, one per connection that is up).

    daemon_soak_plot.py RUN_DIR [OUT.png]     (needs python3-matplotlib)
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    run = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(run, "soak.png")
    rows = list(csv.DictReader(open(os.path.join(run, "samples.csv"))))
    if not rows:
        sys.exit("no samples")
    t = [float(r["t_s"]) / 60 for r in rows]
    num = lambda k, scale=1.0: [float(r[k]) / scale if r[k] else float("nan") for r in rows]  # noqa: E731
    restarts = [t[i] for i in range(1, len(rows))
                if rows[i]["incarnation"] != rows[i - 1]["incarnation"]]
    base = next((r for r in rows if r["phase"] == "baseline"), rows[0])
    removed = [t[i] for i, r in enumerate(rows) if r["phase"] == "removed"]
    panels = [
        ("threads", num("threads"), float(base["threads"])),
        ("open fds", num("fds"), float(base["fds"])),
        ("memory (MiB): RSS, RssAnon", (num("rss_kib", 1024), num("rss_anon_kib", 1024)),
         float(base["rss_anon_kib"]) / 1024),
        ("CPU % (of one core)", num("cpu_pct"), None),
        ("torrents held / partners", (num("torrents"), num("partners")), None),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 13), sharex=True)
    for ax, (title, ys, baseline) in zip(axes, panels):
        for y in (ys if isinstance(ys, tuple) else (ys,)):
            ax.plot(t, y, lw=1)
        if baseline is not None:
            ax.axhline(baseline, ls=":", color="grey", lw=1)
        for x in restarts:
            ax.axvline(x, ls="--", color="red", lw=0.6, alpha=0.6)
        if removed:
            ax.axvspan(removed[0], t[-1], color="green", alpha=0.1)
        ax.set_ylabel(title, fontsize=9)
        ax.grid(alpha=0.3)
    census = os.path.join(run, "census.csv")
    if os.path.exists(census):
        crow = list(csv.DictReader(open(census)))
        ct = [float(r["t_s"]) / 60 for r in crow]
        axes[0].lines[0].set_label("all")
        axes[0].plot(ct, [int(r["pw"]) for r in crow], lw=0.8, label="peer writers / diallers (pw-)")
        axes[0].plot(ct, [int(r["pr"]) for r in crow], lw=0.8, label="peer readers (pr-)")
        axes[0].legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("minutes (red dashes: daemon SIGKILLed and restarted; "
                        "green: every torrent removed; dotted: empty daemon)")
    fig.suptitle(f"bittern daemon soak: {os.path.basename(os.path.abspath(run))}, "
                 f"{len(restarts)} restarts, up to {int(max(num('torrents')))} torrents")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
