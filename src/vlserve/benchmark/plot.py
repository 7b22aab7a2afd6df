"""The PNG: latency percentiles and throughput against the load level, one line style per endpoint.

Four panels: TTFT, ITL and end-to-end latency (P50 solid, P95 dashed, P99 dotted), and output tokens/s (the
naive baseline as a horizontal line). matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

from vlserve.benchmark.runner import BenchRun

STYLES = {"p50": "-", "p95": "--", "p99": ":"}
COLOURS = ("tab:blue", "tab:orange")


def write_plot(bench: BenchRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7.5), layout="constrained")
    axes = figure.subplots(2, 2)
    rate = bench.config.mode == "rate"
    x_label = "request rate (requests/s)" if rate else "concurrency (clients)"
    panels = (
        (axes[0][0], "ttft", "time to first token (ms)", 1000),
        (axes[0][1], "itl", "inter-token latency (ms)", 1000),
        (axes[1][0], "e2e", "end-to-end latency (s)", 1),
    )
    requests_axis = axes[1][1].twinx()
    for run, colour in zip(bench.runs, COLOURS, strict=False):
        levels = [s.level for s in run.levels]
        label = run.endpoint.label
        for ax, key, _title, scale in panels:
            for pct, style in STYLES.items():
                values = [getattr(getattr(s, key), pct) for s in run.levels]
                points = [(x, v * scale) for x, v in zip(levels, values, strict=True) if v is not None]
                if points:
                    ax.plot(*zip(*points, strict=True), style, color=colour, marker="o", ms=3, label=f"{label} {pct}")
        tokens = [s.output_tokens_per_s for s in run.levels]
        axes[1][1].plot(levels, tokens, "-", color=colour, marker="o", label=f"{label} output tokens/s")
        per_s = [s.requests_per_s for s in run.levels]
        requests_axis.plot(levels, per_s, ":", color=colour, marker="x", label=f"{label} requests/s (right)")
    if bench.baseline is not None:
        naive = bench.baseline.levels[0].output_tokens_per_s
        axes[1][1].axhline(naive, color="grey", linestyle="--", label=f"naive script ({naive:.1f} tok/s)")
    ticks = sorted({s.level for run in bench.runs for s in run.levels})
    for ax, _key, title, _scale in (*panels, (axes[1][1], "", "throughput", 1)):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x_label, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if not rate:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax.minorticks_off()
    axes[1][1].set_ylabel("output tokens/s", fontsize=9)
    requests_axis.set_ylabel("requests/s", fontsize=9)
    requests_axis.set_ylim(bottom=0)
    for ax in (axes[0][0], axes[0][1], axes[1][0]):
        ax.legend(fontsize=7)
    lines = axes[1][1].get_legend_handles_labels()
    more = requests_axis.get_legend_handles_labels()
    axes[1][1].legend(lines[0] + more[0], lines[1] + more[1], fontsize=7)
    model = bench.runs[0].endpoint.model
    kinds = ",".join(bench.config.kinds)
    where = "   ".join(f"{run.endpoint.label}: {run.endpoint.base}" for run in bench.runs)
    title = f"vlserve bench: {model}, workload {kinds}, max_tokens {bench.config.max_tokens}\n{where}"
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=100)
