"""The eval report a person reads: a systems x metrics table, and the same as a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOT_SYSTEMS = ("meta", "fusion", "tuned")
METRICS = ("R@1", "R@5", "R@10", "mAP", "ndcg@10")


def systems(result: dict[str, Any]) -> list[str]:
    return [k for k, v in result.items() if k not in NOT_SYSTEMS and isinstance(v, dict)]


def directions(result: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for name in systems(result):
        for d, figs in result[name].items():
            if isinstance(figs, dict):
                seen.setdefault(d)
    return list(seen)


def table(result: dict[str, Any]) -> str:
    """One block per direction: a row per system, a column per metric."""
    lines: list[str] = []
    width = max([14, *(len(name) for name in systems(result))])
    for d in directions(result):
        lines.append(f"{d}")
        lines.append(f"  {'system':{width}s}" + "".join(f"{m:>9s}" for m in METRICS))
        for name in systems(result):
            figs = result[name].get(d)
            if isinstance(figs, dict):
                lines.append(f"  {name:{width}s}" + "".join(
                    f"{figs[m]:9.2f}" if isinstance(figs.get(m), int | float) else f"{'-':>9s}" for m in METRICS))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot(result: dict[str, Any], path: Path, metric: str = "mAP") -> None:
    """A grouped bar chart of `metric` (R@1 too for image-caption sets): systems per direction."""
    import matplotlib  # matplotlib: only the plot needs it

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    dirs = directions(result)
    names = systems(result)
    metrics = [metric, "R@1"] if any("t2i" in d or "i2t" in d for d in dirs) else [metric]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6, 1.6 * len(dirs) * len(metrics) + 3), 4.5),
                             squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, m in zip(axes[0], metrics, strict=True):
        for i, name in enumerate(names):
            vals = [float(result[name].get(d, {}).get(m, 0.0)) for d in dirs]
            xs = [j + i * width for j in range(len(dirs))]
            ax.bar(xs, vals, width, label=name)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(dirs))], dirs, rotation=15)
        ax.set_ylabel(f"{m} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    title = str(result.get("meta", {}).get("data", ""))
    fig.suptitle(f"mmkg eval {title}".strip())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
