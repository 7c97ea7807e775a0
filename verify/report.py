"""Reports: JSON for machines, a Markdown page with figures for people, and an index over all.

Everything on the page is read from the evidence objects; nothing is recomputed here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from verify.checking import ArchitectureResult, ClaimResult  # noqa: E402
from verify.evidence import Binding, Failure, Measurement, Proof, Refutation  # noqa: E402

MAX_LATEX = 1500  # a block map longer than this is summarised by its description


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def to_json(result: ArchitectureResult) -> dict[str, Any]:
    arch = result.architecture
    trained = result.trained
    return {
        "architecture": result.name,
        "size": result.size,
        "control": bool(arch and arch.is_control),
        "task": arch.task if arch else None,
        "reference": arch.reference if arch else "",
        "description": arch.description if arch else "",
        "composition": arch.composition if arch else "",
        "passed_as_expected": result.passed,
        "errors": result.errors,
        "claims": [r.to_dict() for r in result.results],
        "blocks": [{"name": n, "description": d, "latex": ltx} for n, d, ltx in result.blocks_latex],
        "training": None if trained is None else {
            "steps": trained.steps, "seconds": trained.seconds, "device": trained.device, "seed": trained.seed,
            "test_loss": trained.test_loss, "final_loss": trained.history[-1] if trained.history else None,
            "checkpoint": trained.checkpoint,
        },
        "rollout": None if result.rollout is None else result.rollout.to_dict(),
        "environment": result.environment,
        "seconds": result.seconds,
    }


def _plot_defects(result: ArchitectureResult, path: Path) -> bool:
    measured = [(r, r.numeric) for r in result.results if isinstance(r.numeric, Measurement) and r.numeric.defects_sample]
    if not measured:
        return False
    fig, axes = plt.subplots(1, len(measured), figsize=(4.2 * len(measured), 3.2), squeeze=False)
    for ax, (r, m) in zip(axes[0], measured):
        floor = 1e-20
        for sample, label, tol, colour in (
            (m.defects_sample, m.dtype, m.tolerance, "tab:blue"),
            (m.defects_sample_float64, "float64", m.tolerance_float64, "tab:orange"),
        ):
            if not sample:
                continue
            logs = [math.log10(max(v, floor)) for v in sample]
            ax.hist(logs, bins=40, alpha=0.6, color=colour, label=f"{label} defects")
            ax.axvline(math.log10(tol), color=colour, linestyle="--", label=f"{label} tolerance")
        ax.set_title(f"{r.claim.name}: {r.verdict.value}")
        ax.set_xlabel("log10 normalised defect")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _line_plot(path: Path, x, y, xlabel: str, ylabel: str, title: str, size: tuple, log: bool = False) -> bool:
    fig, ax = plt.subplots(figsize=size)
    (ax.semilogy if log else ax.plot)(*([x] if x is not None else []), y, lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_energy(result: ArchitectureResult, path: Path) -> bool:
    if result.rollout is None:
        return False
    data = result.rollout.data
    return _line_plot(path, data["time"], data["energy_error"], "time", "H(x_k) − H(x_0)",
                      f"{result.name}: true energy error over {data['steps']} steps ({data['classification']})", (7, 3))


def _plot_loss(result: ArchitectureResult, path: Path) -> bool:
    if result.trained is None or not result.trained.history:
        return False
    return _line_plot(path, None, result.trained.history, "step", "training loss",
                      f"{result.name}: training loss", (5, 3), log=True)


def _plot_equivariance(result: ArchitectureResult, path: Path) -> bool:
    """Bar chart of e(g) per group element (exact vs interpolated), the harness floor and the thresholds."""
    from properties.equivariant import EquivarianceMeasurement

    measured = [(r, r.numeric) for r in result.results if isinstance(r.numeric, EquivarianceMeasurement)]
    if not measured:
        return False
    fig, axes = plt.subplots(len(measured), 1, figsize=(max(6.0, 0.25 * max(len(m.elements) for _, m in measured)), 3.4 * len(measured)),
                             squeeze=False)
    for ax, (r, m) in zip(axes[:, 0], measured):
        xs = range(len(m.elements))
        tiny = 1e-18
        colours = ["tab:blue" if lab == "exact" else "tab:orange" for lab in m.labels]
        ax.bar(xs, [max(e, tiny) for e in m.errors], color=colours, label="trained model")
        if m.untrained.get("errors"):
            ax.plot(xs, [max(e, tiny) for e in m.untrained["errors"]], "k.", label="untrained (re-initialised)")
        ax.plot(xs, [max(f, tiny) for f in m.floors], "g_", markersize=14, label="harness floor (blur)")
        ax.plot(xs, m.thresholds, "r--", lw=0.8, label="threshold")
        ax.set_yscale("log")
        if len(m.elements) <= 32:
            ax.set_xticks(list(xs), m.elements, rotation=60, fontsize=7)
        ax.set_ylabel("relative error e(g)")
        ax.set_title(f"{r.claim.name} [{m.group}]: {r.verdict.value} (blue exact, orange interpolated)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _search_text(search: Any) -> str:
    if not search:
        return "not run (max_examples = 0)"
    if search.get("skipped"):
        return search["skipped"]
    worst, ce = search.get("worst") or {}, search.get("counterexample")
    text = (f"{search['examples']} inputs ({search['strategy']}); worst e/threshold {_fmt(search['worst_ratio'])}"
            + (f" at {worst['element']} on {worst['input']}" if worst else ""))
    if ce:
        text += (f"; **counterexample** (shrunk): e({ce['element']}) = {_fmt(ce['error'])} (threshold {_fmt(ce['threshold'])}), "
                 f"float64 {_fmt(ce['error_float64'])} (threshold {_fmt(ce['threshold_float64'])}) on {ce['input']}")
    beyond = search.get("beyond_grid_amplitude")
    if beyond:
        text += (f"; beyond the claimed amplitude (not judged): e({beyond['element']}) = {_fmt(beyond['error'])}, "
                 f"e/threshold ≤ {_fmt(beyond['ratio'])} at {_fmt(beyond['amplitude'])}× the data on {beyond['input']}")
    if search.get("budget_rule"):
        text += f"; budget: {search['budget_rule']}"
    return text


def _equivariance_section(m: Any) -> list[str]:
    rows = [
        ("verdict", m.verdict.value), ("summary", m.summary), ("defect", f"${m.defect}$"),
        ("elements", f"{len(m.elements)} ({'every element' if m.enumerated else 'Haar sample + exact quarter turns'})"),
        ("worst element", f"{m.worst_element} (e = {_fmt(m.worst_error)})"),
        ("violating", ", ".join(m.violating) or "none"),
        ("exact-element tolerance", f"{_fmt(m.tolerance)} = {m.tolerance_formula}"),
        ("interpolated rule", m.floor_rule),
        ("Lie derivative", "—" if not m.lie else f"{_fmt(m.lie['value'])} (floor {_fmt(m.lie['floor'])}, threshold {_fmt(m.lie['threshold'])})"),
        ("search", _search_text(m.search)),
        ("dtype / device / seed / inputs", f"{m.dtype} / {m.device} / {m.seed} / {m.n_inputs}"),
        ("seconds", f"{m.seconds:.2f}"),
    ]
    lines = ["*Numeric (per group element):*", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    lines += ["| element | kind | e(g) trained | e(g) untrained | floor | threshold |", "|---|---|---|---|---|---|"]
    before = list(m.untrained.get("errors", [])) or [math.nan] * len(m.elements)
    for g, lab, e, e0, f, th in zip(m.elements, m.labels, m.errors, before, m.floors, m.thresholds):
        lines.append(f"| {g} | {lab} | {_fmt(e)} | {_fmt(e0)} | {_fmt(f)} | {_fmt(th)} |")
    return lines + [""] + _coverage_table(m.search.get("methods", {})) + ["![equivariance](equivariance.png)", ""]


def _symbolic_section(r: ClaimResult) -> list[str]:
    ev = r.symbolic
    if ev is None:
        return ["*Symbolic:* no symbolic form is declared for this architecture, so this claim is checked numerically only.", ""]
    lines = [f"*Symbolic ({ev.verdict.value}, {ev.seconds:.3f} s):* {ev.summary}", ""]
    if isinstance(ev, (Proof, Refutation)):
        lines += [f"Claim: $${ev.statement}$$", ""]
        lines += ["| layer | verdict | residual | seconds |", "|---|---|---|---|"]
        for b in ev.blocks:
            residual = b.residual if len(b.residual) < 300 else b.residual[:300] + r"\ldots"
            lines.append(f"| {b.block} | {b.verdict.value} | ${residual}$ | {b.seconds:.3f} |")
        lines.append("")
        lines.append(f"Obligation per layer: ${ev.blocks[0].obligation}$")
        lines.append("")
    if isinstance(ev, Proof):
        lines += [f"Composition lemma: ${ev.lemma}$", ""]
    if isinstance(ev, Refutation):
        for b in ev.blocks:
            if b.instance and "element" in b.instance:
                lines += [f"Concrete instance for **{b.block}**: filter {b.instance['filter']} at {b.instance['element']}, "
                          f"largest residual entry = **{b.instance['residual']:.4g}**.", ""]
            elif b.instance:
                inst = b.instance
                lines += [
                    f"Concrete instance for **{b.block}**: {inst['activation']}; x = {inst['x']}; "
                    f"parameters (seed {inst['seed']}) = `{json.dumps(inst['parameters'])[:600]}`; "
                    f"largest residual entry = **{inst['residual']:.4g}**.", "",
                ]
                if b.legend:
                    lines.append("Symbols: " + "; ".join(f"${k}$ = `{v}`" for k, v in list(b.legend.items())[:8]))
                    lines.append("")
    if isinstance(ev, Failure):
        lines += [f"Expected: {ev.expected}. Fix: {ev.fix}", ""]
    return lines


def _numeric_section(r: ClaimResult) -> list[str]:
    m = r.numeric
    if m is None:
        return ["*Numeric:* not run.", ""]
    if isinstance(m, Failure):
        return [f"*Numeric ({m.verdict.value}):* {m.summary}", ""]
    if hasattr(m, "floors"):  # EquivarianceMeasurement
        return _equivariance_section(m)
    assert isinstance(m, Measurement)
    rows = [
        ("verdict", m.verdict.value),
        ("defect", f"${m.defect}$"),
        ("max defect", _fmt(m.max_defect)),
        ("tolerance", f"{_fmt(m.tolerance)} = {m.tolerance_formula}"),
        ("quantiles 50/90/99 %", " / ".join(_fmt(v) for v in m.quantiles.values())),
        ("float64 max defect / tolerance", f"{_fmt(m.max_defect_float64)} / {_fmt(m.tolerance_float64)}"),
        ("classification", m.classification),
        ("worst input", "[" + ", ".join(f"{v:.4g}" for v in m.worst_input) + "]"),
        ("shrunk counterexample", "none" if m.counterexample is None else
         "[" + ", ".join(f"{v:.4g}" for v in m.counterexample) + f"] (defect {_fmt(m.counterexample_defect)})"),
        ("tolerance / observed float32 defect", _fmt(m.search.get("calibration_ratio", math.nan))),
        ("domain", _domain_text(m.search.get("domain", {}))),
        ("float64 oracle", m.search.get("oracle", "—")),
        ("inputs", str(m.n_inputs)),
        ("dtype / device / seed", f"{m.dtype} / {m.device} / {m.seed}"),
        ("seconds", f"{m.seconds:.2f}"),
    ]
    return (["*Numeric:*", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
            + _coverage_table(m.search.get("methods", {})))


def _domain_text(d: dict) -> str:
    if not d:
        return "—"
    if d.get("kind") == "box":
        return (f"data box {d['low']}..{d['high']}, searched at scales ×{', '.join(f'{s:g}' for s in d['scales'])}; "
                f"claimed {d['claimed_region']}")
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _coverage_table(methods: dict) -> list[str]:
    """What each search method did and the worst ratio defect/tolerance it found (the coverage, stated)."""
    if not methods:
        return []
    lines = ["*Search coverage* (ratio = defect / tolerance; > 1 is a violation):", "",
             "| method | what it did | best ratio (model dtype) | best ratio (float64) |", "|---|---|---|---|"]
    for name, m in methods.items():
        if name == "sampling":
            did = f"{m.get('inputs')} inputs at scales ×{', '.join(m.get('scales', []))}"
        elif name == "hypothesis":
            did = f"{m.get('examples', 0)} examples"
        else:
            did = f"{m.get('starts')} starts × {m.get('steps')} steps, {m.get('accepted_moves')} moves accepted"
            if name == "gradient" and m.get("flat_gradients"):
                did += f", {m['flat_gradients']} flat gradients"
        f64 = m.get("best_ratio_float64")
        is64 = name in ("gradient", "smoothed")
        lines.append(f"| {name} | {m.get('method', '')}: {did} | {'—' if is64 else _fmt(m.get('best_ratio'))} | "
                     f"{_fmt(m.get('best_ratio')) if is64 else _fmt(f64) if f64 is not None else '—'} |")
    per = methods.get("sampling", {}).get("per_scale", {})
    if per:
        lines += ["", "| scale | inputs | worst ratio | worst ratio (float64) |", "|---|---|---|---|"]
        lines += [f"| ×{k} | {v['inputs']} | {_fmt(v['worst_ratio'])} | {_fmt(v.get('worst_ratio_float64', math.nan))} |"
                  for k, v in per.items()]
    return lines + [""]


def _binding_section(r: ClaimResult) -> list[str]:
    b = r.binding
    sym = r.symbolic
    if b is None:
        if sym is not None and getattr(sym, "bound_by", ""):
            return [f"*Binding:* the proof was made on the module's own numbers: {sym.bound_by}.", ""]
        if sym is not None and sym.verdict.value == "proved":
            return ["*Binding:* none: the proof is not bound to the module's code, so it does not make the claim `proved`.", ""]
        return []
    lines = [f"*Binding ({b.verdict.value}, {b.seconds:.2f} s):* {b.summary}", ""]
    if isinstance(b, Binding):
        lines += [f"Method: {b.method}; layers: {', '.join(b.layers[:12])}{'…' if len(b.layers) > 12 else ''}; "
                  f"tolerance {_fmt(b.tolerance)} = {b.tolerance_formula}.", ""]
    elif isinstance(b, Failure):
        lines += [f"Expected: {b.expected}. Fix: {b.fix}", ""]
    return lines


def write_architecture(result: ArchitectureResult, root: Path | str) -> Path:
    """Write reports/<name>/{report.json, README.md, *.png}; returns the folder."""
    folder = Path(root) / result.name
    folder.mkdir(parents=True, exist_ok=True)
    data = to_json(result)
    (folder / "report.json").write_text(json.dumps(data, indent=1, default=str))
    figs = {
        "defects.png": _plot_defects(result, folder / "defects.png"),
        "energy.png": _plot_energy(result, folder / "energy.png"),
        "loss.png": _plot_loss(result, folder / "loss.png"),
        "equivariance.png": _plot_equivariance(result, folder / "equivariance.png"),
    }
    arch = result.architecture
    lines = [f"# {result.name}", ""]
    if arch:
        if arch.is_control:
            lines += ["**Negative control**: this architecture makes at least one claim falsely; the verifier must refute it.", ""]
        lines += [arch.description, "", f"Reference: {arch.reference or '—'}. Task: `{arch.task}`. Size: `{result.size}`. "
                  f"Composition: {arch.composition or '—'}.", ""]
    status = "every claim came out as expected" if result.passed else "**some claims did not come out as expected**"
    lines += [f"Outcome: {status} ({result.seconds:.1f} s).", ""]
    for e in result.errors:
        lines += [f"> error: {e}", ""]
    lines += ["## Claims", "", "| claim | claimed | verdict | as expected | symbolic | numeric max defect / tolerance |", "|---|---|---|---|---|---|"]
    for r in result.results:
        num = r.numeric
        ntext = (f"{_fmt(num.max_defect)} / {_fmt(num.tolerance)}" if isinstance(num, Measurement)
                 else (num.verdict.value if num else "—"))
        lines.append(
            f"| {r.claim.name} | {'true' if r.claim.expected else 'falsely'} | **{r.verdict.value}** | "
            f"{'yes' if r.as_expected else 'NO'} | {r.symbolic.verdict.value if r.symbolic else 'none'} | {ntext} |"
        )
    lines.append("")
    if result.blocks_latex:
        lines += ["## Building blocks (symbolic form)", ""]
        for name, desc, latex in result.blocks_latex:
            lines.append(f"- **{name}**: {desc}")
            if len(latex) <= MAX_LATEX:
                lines += ["", f"  $${latex}$$", ""]
        lines.append("")
    for r in result.results:
        lines += [f"## {r.claim}", ""]
        if not r.claim.expected:
            lines += [f"Why it is false: {r.claim.reason}", ""]
        lines += _symbolic_section(r) + _binding_section(r) + _numeric_section(r)
    if figs["defects.png"]:
        lines += ["## Defect distributions", "", "![defects](defects.png)", ""]
    if result.rollout is not None:
        d = result.rollout.data
        lines += [
            "## Long rollout: true energy error", "", result.rollout.summary, "",
            f"Rule: {d.get('rule', '')}. This informs; it is not a verdict on a claim (energy error of a learned map is model error).", "",
            "![energy](energy.png)", "",
        ]
    if result.trained is not None:
        t = result.trained
        lines += ["## Training", "", f"{t.steps} Adam steps in {t.seconds:.1f} s on {t.device}, seed {t.seed}; "
                  f"final training MSE {_fmt(t.history[-1] if t.history else math.nan)}, held-out MSE {_fmt(t.test_loss)}; "
                  f"checkpoint `{t.checkpoint}`.", ""]
        if figs["loss.png"]:
            lines += ["![loss](loss.png)", ""]
    env = result.environment
    lines += ["## Reproduce", "", f"`verify check {result.name} --size {result.size} --seed {env.get('seed')}` — "
              + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    (folder / "README.md").write_text("\n".join(lines))
    return folder


def write_index(results: Sequence[ArchitectureResult], root: Path | str, extra: Sequence[str] = ()) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# Verification reports", "", "Every registered architecture and its claims. *Controls* claim a property "
             "falsely on purpose; for them `violated` is the expected verdict.", "",
             "| architecture | kind | claim | verdict | as expected | symbolic | numeric max defect / tolerance | rollout |",
             "|---|---|---|---|---|---|---|---|"]
    summary = []
    for res in results:
        kind = "control" if res.architecture and res.architecture.is_control else "genuine"
        roll = res.rollout.data["classification"] if res.rollout is not None else "—"
        for r in res.results:
            num = r.numeric
            ntext = f"{_fmt(num.max_defect)} / {_fmt(num.tolerance)}" if isinstance(num, Measurement) else (num.verdict.value if num else "—")
            lines.append(
                f"| [{res.name}]({res.name}/README.md) | {kind} | {r.claim.name}{'' if r.claim.expected else ' (false)'} | "
                f"**{r.verdict.value}** | {'yes' if r.as_expected else 'NO'} | {r.symbolic.verdict.value if r.symbolic else 'none'} | {ntext} | {roll} |"
            )
        summary.append({"architecture": res.name, "passed_as_expected": res.passed,
                        "claims": {r.claim.name: r.verdict.value for r in res.results}})
    lines += [""] + list(extra)
    (root / "README.md").write_text("\n".join(lines) + "\n")
    (root / "index.json").write_text(json.dumps(summary, indent=1))
    return root / "README.md"
