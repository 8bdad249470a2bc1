"""`inferline advise` on the three example workloads (examples/advise/*.yaml) with the bundled EXAMPLE prices,
plus the seed note's cost claims checked against the model, and a cost-against-traffic plot per workload.

Capacity comes from the SIMULATED engine model (h100-llama8b for a dedicated GPU replica, cpu-smollm2 for
an edge device); prices are the example file's (as of its `as_of` date). Writes results/advise_examples.{json,md}
and results/advise_<workload>.png.

    .venv/bin/python benchmarks/advise_examples.py [--prices FILE]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _autoscale import RESULTS, git_commit, machine, md_table, now_iso, write_results
from rich.console import Console

from inferline.advise.capacity import slo_capacity
from inferline.advise.options import rank_options
from inferline.advise.plots import cost_plot
from inferline.advise.prices import load_prices
from inferline.advise.report import Inputs, claims, print_advice, recommendation
from inferline.advise.workload import load_workload
from inferline.autoscale.profiles import load_profile

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "advise"
WORKLOADS = ("internal-tool", "chat-product", "offline-edge")
console = Console(width=180)


def _money(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prices", type=Path, default=None, help="prices YAML (default: the bundled example)")
    args = ap.parse_args()
    prices = load_prices(args.prices)
    started, t0 = now_iso(), time.perf_counter()
    md = [
        f"# advise_examples\n\n{started}, commit {git_commit()}, prices as of {prices.as_of} "
        f"({'bundled EXAMPLE' if args.prices is None else args.prices}); capacity from the SIMULATED engine model.\n"
    ]
    data: dict[str, Any] = {"benchmark": "advise_examples", "started_at": started, "commit": git_commit(),
                            "machine": machine(), "prices_as_of": prices.as_of, "workloads": []}  # fmt: skip
    for name in WORKLOADS:
        w = load_workload(EXAMPLES / f"{name}.yaml", {})
        gpu = load_profile(prices.dedicated.profile)
        edge = load_profile(prices.edge.profile)
        gcap = slo_capacity(gpu, w.prompt, w.output, w.ttft_slo_ms, w.tpot_slo_ms)
        ecap = slo_capacity(edge, w.prompt, w.output, w.ttft_slo_ms, w.tpot_slo_ms)
        inp = Inputs(w, prices, gcap, gpu, ecap, edge)
        ranked = rank_options(inp.options())
        print_advice(console, inp, ranked, "bundled EXAMPLE" if args.prices is None else str(args.prices))
        best, reasons = recommendation(ranked, w, prices)
        png = cost_plot(inp, RESULTS / f"advise_{name}.png")
        rows = [
            [i, o.name, o.feasible, _money(o.monthly_cost), "–" if not math.isfinite(o.cost_per_1m_tokens)
             else f"{o.cost_per_1m_tokens:.3g}", o.ttft_p95_ms, o.units, "; ".join(o.against) or o.limit]
            for i, o in enumerate(ranked, 1)
        ]  # fmt: skip
        cols = ("#", "option", "ok", f"{prices.currency}/month", f"{prices.currency}/1M tok", "p95 TTFT ms", "sized as",
                "what limits it / why not")  # fmt: skip
        desc = (
            f"{w.requests_per_day:,.0f} requests/day (mean {w.mean_rps:.3g}, peak {w.peak:.3g} req/s), prompt "
            f"{w.prompt_tokens} / output {w.output_tokens} tokens, p95 TTFT SLO {w.ttft_slo_ms:.0f} ms"
            + (f", TPOT SLO {w.tpot_slo_ms:.0f} ms" if w.tpot_slo_ms else "")
            + f", quality {w.quality.value}"
            + (", offline" if w.offline else "") + (", compliance" if w.compliance else "")
            + (", needs routing" if w.needs_routing else "")
        )  # fmt: skip
        md.append(f"## {name}\n\n{desc}. One H100 replica serves {gcap.rate_rps:.3g} req/s within the SLOs "
                  f"({gcap.limit}); one edge device {ecap.rate_rps:.3g} req/s.\n")  # fmt: skip
        md.append(md_table(cols, rows) + "\n")
        md.append(f"**Recommendation: {best.name if best else 'none feasible'}.**\n")
        md.append("\n".join(f"- {r}" for r in reasons) + "\n")
        data["workloads"].append({
            "workload": w.model_dump(mode="json"),
            "capacity": {"dedicated": gcap.to_json(), "edge": ecap.to_json()},
            "options": [o.to_json() for o in ranked],
            "recommendation": best.key if best else None,
            "reasons": reasons,
            "plot": str(png),
        })  # fmt: skip
        if name == "chat-product":
            data["claims"] = [c for c in claims(inp) if not c["claim"].startswith("edge")]
        if name == "offline-edge":
            data["claims"] += [c for c in claims(inp) if c["claim"].startswith("edge")]
    md.append("## The seed note's cost claims against this model\n")
    md.append("Token mix of chat-product; the edge row for offline-edge.\n")
    md.append(md_table(("claim", "at", "this model", "holds"),
                       [[c["claim"], c["at"], c["model"], c["holds"]] for c in data["claims"]]) + "\n")  # fmt: skip
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    j, m = write_results("advise_examples", data, "\n".join(md))
    console.print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
