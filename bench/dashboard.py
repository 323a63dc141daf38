"""The dashboard's panels from a real run, as PNGs: vaeserve on the shipped model, scraped by a
real Prometheus, under normal, rotated, then normal digits again; each panel of
docker/monitoring/grafana/dashboards/vaeserve.json drawn from Prometheus's range queries
(Grafana is not available here, so matplotlib draws what Grafana would).

    python -m bench.dashboard                          # about 4 minutes; writes docs/monitoring/*.png
    python -m bench.dashboard --phase-s 20 --out /tmp/panels

Traffic: POST /v1/score with 10 images a request as .npy, 4 requests a second, with
importance_samples=1 (the shipped model decides by mse, which does not depend on K), plus a
refused request (a broken PNG) every 5 s. Phases: the training split's digits, the held-out
test digits turned by 90°, then the training split's digits again. The service computes a
drift report every 2 s. Needs Debian's `prometheus`, the training data (training.data) and
matplotlib (the `train` extra).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
from numpy.typing import NDArray

from bench.harness import PORT, ROOT, serve, without_settings
from bench.prometheus import DASHBOARD, VARIABLES, Prometheus, dashboard_query, run_prometheus

OUT = ROOT / "docs" / "monitoring"
PANEL_VARIABLES = {**VARIABLES, "$__rate_interval": "15s"}  # scrapes every second, a 4-minute run
CHUNK, PER_SECOND = 10, 4.0


def send_images(client: httpx.Client, url: str, images: NDArray[np.float32], chunk: int = 25) -> None:
    """POST /v1/score `images` (N, C, H, W) in [0, 1], `chunk` at a time as .npy, K = 1; every answer must be a 200."""
    for start in range(0, len(images), chunk):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(images[start : start + chunk], np.float32))
        r = client.post(f"{url}/v1/score?importance_samples=1", content=buffer.getvalue(),
                        headers={"content-type": "application/x-npy"})  # fmt: skip
        if r.status_code != 200:
            raise RuntimeError(f"/v1/score answered {r.status_code}: {r.text[:300]}")


def run_phase(client: httpx.Client, url: str, images: NDArray[np.float32], seconds: float) -> None:
    """Score `images` in a cycle, CHUNK a request at PER_SECOND requests a second, for `seconds`."""
    started, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds:
        first = (sent * CHUNK) % len(images)
        send_images(client, url, images[first : first + CHUNK], CHUNK)
        sent += 1
        if sent % int(5 * PER_SECOND) == 0:  # a broken client now and then
            client.post(f"{url}/v1/score", content=b"\x89PNG broken", headers={"content-type": "image/png"})
        time.sleep(max(0.0, sent / PER_SECOND - elapsed))


# -- drawing ---------------------------------------------------------------------------------


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template or "") or str(labels)


def _substituted(expr: str) -> str:
    return dashboard_query(expr, PANEL_VARIABLES)


def draw(prom: Prometheus, start: float, end: float, phases: list[tuple[str, float, float]], out: Path) -> list[Path]:
    """One PNG per dashboard row, each panel from its queries over [start, end]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    rows: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            rows.append((panel["title"].replace("$model:$version", "mnist-vae:1"), []))
        elif panel["type"] != "table":  # the models table is text: /v1/models says it
            rows[-1][1].append(panel)
    written = []
    step = max(1.0, (end - start) / 240)
    for title, panels in rows:
        columns = 3
        lines = -(-len(panels) // columns)
        fig, axes = plt.subplots(lines, columns, figsize=(15, 3.4 * lines), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw_panel(ax, prom, panel, start, end, step)
            for name, begin, finish in phases if panel["type"] != "bargauge" else ():
                if name != "normal":
                    ax.axvspan(begin - start, finish - start, color="tab:red", alpha=0.08, lw=0)
            ax.set_title(panel["title"].replace("$score", "mse"), fontsize=10)
            ax.tick_params(labelsize=8)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(f"{title} (shaded: rotated digits)", fontsize=12)
        fig.tight_layout()
        path = out / f"{title.split()[0].lower()}.png"
        fig.savefig(path, dpi=72)
        plt.close(fig)
        written.append(path)
    return written


def _draw_panel(ax: Any, prom: Prometheus, panel: dict[str, Any], start: float, end: float, step: float) -> None:
    if panel["type"] == "heatmap":
        (target,) = panel["targets"]
        buckets = sorted(prom.query_range(_substituted(target["expr"]), start, end, step),
                         key=lambda s: float(s["metric"]["le"]))  # fmt: skip
        edges = [float(s["metric"]["le"]) for s in buckets]
        times = [float(t) - start for t, _ in buckets[0]["values"]] if buckets else []
        grid = np.array([[float(v) for _, v in s["values"]] for s in buckets])  # cumulative per le
        counts = np.diff(grid, axis=0, prepend=0.0)  # per bucket
        finite = [f"{e:.3g}" for e in edges]
        ax.imshow(np.log1p(counts), aspect="auto", origin="lower", cmap="viridis",
                  extent=(times[0], times[-1], 0, len(edges)) if times else None)  # fmt: skip
        ax.set_yticks(np.arange(len(edges))[::3] + 0.5, finite[::3], fontsize=7)
        ax.set_xlabel("s")
        return
    if panel["type"] == "bargauge":
        (target,) = panel["targets"]
        result = prom.query(_substituted(target["expr"]).replace("[1h]", f"[{int(end - start) + 1}s]"))
        result = sorted(result, key=lambda s: float(s["metric"]["le"]))
        cumulative = np.array([float(s["value"][1]) for s in result])
        ax.bar(range(len(result)), np.diff(cumulative, prepend=0.0), color="tab:blue")
        ax.set_xticks(range(len(result)), [s["metric"]["le"] for s in result], rotation=90, fontsize=6)
        ax.set_xlabel("p-value ≤ le")
        return
    config = panel.get("fieldConfig", {})
    on_right = {o["matcher"]["options"] for o in config.get("overrides", [])
                if {"id": "custom.axisPlacement", "value": "right"} in o["properties"]}  # fmt: skip
    right = ax.twinx() if on_right else None
    lines = 0
    for target in panel["targets"]:
        for series in prom.query_range(_substituted(target["expr"]), start, end, step):
            times = [float(t) - start for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            label = _legend(target.get("legendFormat", ""), series["metric"])
            axis = right if right is not None and label in on_right else ax
            axis.plot(times, values, lw=1.2, label=label, color=f"C{lines % 10}")  # one colour cycle for both axes
            lines += 1
    if config.get("defaults", {}).get("custom", {}).get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more, [*labels, *(f"{label} (right)" for label in more_labels)]
        right.tick_params(labelsize=8)
    if handles:
        ax.legend(handles, labels, fontsize=6, ncol=2 if len(handles) > 6 else 1, loc="upper left")
    ax.set_xlabel("s")


# -- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--phase-s", type=float, default=60.0, help="seconds of each of the three phases")
    p.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = p.parse_args(argv)
    from model.bundle import load_bundle
    from training.data import bundle_arrays

    manifest = load_bundle(ROOT / "model" / "zoo" / "mnist-vae" / "1").manifest
    splits = bundle_arrays(manifest)
    normal, turned = splits["train"], np.ascontiguousarray(np.rot90(splits["test"], 1, axes=(2, 3)))
    env = without_settings(VAESERVE_DRIFT_INTERVAL_S="2", VAESERVE_LOG_FORMAT="text")
    argv_app = [sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve(argv_app, env=env, timeout_s=120) as live, \
            run_prometheus(live.url, Path(tmp)) as prom, httpx.Client(timeout=60) as client:  # fmt: skip
        prom.wait_until(lambda: prom.value('up{job="vaeserve"}') == 1.0, "the first scrape")
        phases = []
        for name, images in (("normal", normal), ("rotated", turned), ("normal", normal)):
            began = time.time()
            print(f"{name}: {args.phase_s:g} s", flush=True)
            run_phase(client, live.url, images, args.phase_s)
            phases.append((name, began, time.time()))
        time.sleep(5)  # the last drift report and scrapes
        start, end = phases[0][1] - 5, time.time()
        for path in draw(prom, start, end, phases, args.out):
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        alerts = {r["name"]: r["state"] for r in prom.rules() if r["type"] == "alerting"}
        print("alerts now:", json.dumps(alerts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
