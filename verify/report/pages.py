"""Reports: JSON for machines, a Markdown page with figures for people, and an index over all.

Everything on the page is read from the evidence objects; nothing is recomputed here.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from verify.checking.api import ArchitectureResult, ClaimResult  # noqa: E402
from verify.evidence import Binding, Failure, Measurement, Proof, Refutation  # noqa: E402
from verify.train.loss_names import loss_phrase  # noqa: E402
from verify.files import atomic_path, atomic_write_text, hook, link_or_copy_tree, staged_folder  # noqa: E402

MAX_LATEX = 1500  # a block map longer than this is summarised by its description


def _save(fig: Any, path: Path) -> None:
    """A figure, written atomically (a kill leaves the previous PNG, never a 0-byte one)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


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
        "task": (arch.task_for(result.size) if result.size in arch.sizes else arch.task) if arch else None,
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
            "checkpoint": trained.checkpoint, "origin": trained.origin, "fingerprint": trained.fingerprint,
            "records": trained.records,
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
    _save(fig, path)
    return True


def _line_plot(path: Path, x, y, xlabel: str, ylabel: str, title: str, size: tuple, log: bool = False) -> bool:
    fig, ax = plt.subplots(figsize=size)
    (ax.semilogy if log else ax.plot)(*([x] if x is not None else []), y, lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
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
    from verify.properties.equivariant import EquivarianceMeasurement

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
    _save(fig, path)
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
        ("Lie derivative", "—" if not m.lie else f"{_fmt(m.lie['value'])} ("
         + (f"floor {_fmt(m.lie['floor'])}, " if "floor" in m.lie else "") + f"threshold {_fmt(m.lie['threshold'])})"),
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
        lines += [f"Expected: {ev.expected}. Fix: {ev.fix}" + (f" Exception: `{ev.exception}`" if ev.exception else ""), ""]
    return lines


def _numeric_section(r: ClaimResult) -> list[str]:
    m = r.numeric
    if m is None:
        return ["*Numeric:* not run.", ""]
    if isinstance(m, Failure):
        return [f"*Numeric ({m.verdict.value}, stage {m.stage}):* {m.summary}", "",
                f"Expected: {m.expected}. Fix: {m.fix}" + (f" Exception: `{m.exception}`" if m.exception else ""), ""]
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
    # a measurement that carries more than one defect (Lipschitz: both bounds, per layer) renders the rest itself
    extra = m.extra_markdown() if callable(getattr(m, "extra_markdown", None)) else []
    return (["*Numeric:*", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""] + extra
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
        elif name == "resolution":
            did = m.get("statement") or f"not applicable: {m.get('why', '')}"
        else:
            did = f"{m.get('starts')} starts × {m.get('steps')} steps, {m.get('accepted_moves')} moves accepted"
            if name == "gradient" and m.get("flat_gradients"):
                did += f", {m['flat_gradients']} flat gradients"
        f64 = m.get("best_ratio_float64")
        is64 = name in ("gradient", "smoothed")
        lines.append(f"| {name} | {m.get('method', '')}: {did} | "
                     f"{'—' if is64 or m.get('best_ratio') is None else _fmt(m.get('best_ratio'))} | "
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


def reproduce(result: ArchitectureResult, root: Path | str, checkpoint: str | None) -> dict[str, str]:
    """The commands that reproduce a report: complete (every setting that shapes the evidence, and the --plugin
    that registers the architecture) and relative (to the report's folder, or to the folder the run was made in)."""
    opts = result.options
    args = [f"--size {result.size}", f"--seed {result.environment.get('seed', opts.get('seed', 0))}"]
    if opts:
        args += [f"--inputs {opts['n_inputs']}", f"--examples {opts['max_examples']}",
                 f"--symbolic-timeout {opts['time_limit']:g}", f"--rollout-steps {opts['rollout_steps']}"]
        if not opts.get("symbolic", True):
            args.append("--numeric-only")
        if not opts.get("numeric", True):
            args.append("--symbolic-only")
        if opts.get("device"):
            args.append(f"--device {opts['device']}")
    arch = result.architecture
    module = getattr(arch.factory, "__module__", "") if arch else ""
    plugin, note = "", ""
    if module and not module.startswith("verify.models"):
        if module == "__main__":
            note = ("the architecture was registered by a script (__main__): put it in an importable module and add "
                    "`--plugin MODULE` after `verify`")
        else:
            plugin = f" --plugin {module}"
    opts_text = " ".join(args)
    out = {}
    if checkpoint:
        out["check"] = f"verify{plugin} check {result.name} --checkpoint {checkpoint} {opts_text}"
    rel_root = os.path.relpath(Path(root).resolve(), Path.cwd().resolve())
    out["report"] = f"verify{plugin} report {result.name} --out {rel_root} {opts_text}"
    if note:
        out["note"] = note
    return out


def write_architecture(result: ArchitectureResult, root: Path | str, *, checkpoint: Path | str | None = None) -> Path:
    """Write <root>/<name>/{report.json, README.md, *.png} as one unit; returns the folder.

    Everything is written into a hidden staging folder and swapped in at the end, so an interrupt leaves the
    previous report (and its checkpoint) byte for byte. `checkpoint`, a freshly saved checkpoint folder, is moved
    in as the report's `checkpoint/`; without one, the folder's existing checkpoint is kept.
    """
    folder = Path(root) / result.name
    with staged_folder(folder) as stage:
        if checkpoint is not None and Path(checkpoint).is_dir():
            Path(checkpoint).rename(stage / "checkpoint")
        elif checkpoint is None and (folder / "checkpoint").is_dir():
            link_or_copy_tree(folder / "checkpoint", stage / "checkpoint")
        _write_architecture_files(result, root, stage)
    return folder


def _write_architecture_files(result: ArchitectureResult, root: Path | str, folder: Path) -> None:
    data = to_json(result)
    trained = result.trained
    here = (folder / "checkpoint" / "checkpoint.json").is_file()
    ckpt_ref = None
    if here:
        ckpt_ref = "checkpoint"
    elif trained is not None and trained.checkpoint:  # elsewhere (the API's checkpoint_dir): relative to the report
        ckpt_ref = os.path.relpath(Path(trained.checkpoint).resolve(), (Path(root) / result.name).resolve())
    if data["training"] is not None:
        data["training"]["checkpoint"] = ckpt_ref
    repro = reproduce(result, root, "checkpoint" if here else None)
    data["reproduce"] = repro
    atomic_write_text(folder / "report.json", json.dumps(data, indent=1, default=str))
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
        lines += [arch.description, "", f"Reference: {arch.reference or '—'}. Task: `{arch.task_for(result.size) if result.size in arch.sizes else arch.task}`. Size: `{result.size}`. "
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
                  f"{loss_phrase(_task(result), _fmt(t.history[-1] if t.history else math.nan), _fmt(t.test_loss))}; "
                  f"checkpoint `{'checkpoint/' if here else ckpt_ref}`{' (in this folder)' if here else ''}"
                  + ("" if t.origin == "trained" else f"; this run {t.origin}: the steps and seconds are the original "
                                                      "training's") + ".", ""]
        if figs["loss.png"]:
            lines += ["![loss](loss.png)", ""]
    from verify.report.drift_figures import drift_section  # a tensor's defect along training, where recorded
    from verify.report.flow_figures import flow_section  # flows only: samples, reconstruction, log-det agreement

    lines += drift_section(result, folder, _save)

    lines += flow_section(result, folder, _save)
    env = result.environment
    lines += ["## Reproduce", ""]
    if "check" in repro:
        lines += [f"Re-check the saved weights (run in this folder): `{repro['check']}`", ""]
    lines += [f"Retrain and rewrite this report (run in the folder the report was made from): `{repro['report']}`", ""]
    if "note" in repro:
        lines += [f"Note: {repro['note']}.", ""]
    lines += ["Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    atomic_write_text(folder / "README.md", "\n".join(lines))


def _task(result: ArchitectureResult) -> Any:
    """The task the result's model trained on (None when unknown): its loss is named after it."""
    arch = result.architecture
    if arch is None:
        return None
    try:
        from verify.declare.registry import get_task

        name = arch.task_for(result.size) if result.size in arch.sizes else arch.task
        return get_task(name) if name else None
    except Exception:  # noqa: BLE001 - a label is not worth failing a report over: the generic "loss" is used
        return None


def _index_rows(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Index rows and summary of one architecture, from its report.json data (the one source for old and new)."""
    name = data["architecture"]
    kind = "control" if data.get("control") else "genuine"
    roll = ((data.get("rollout") or {}).get("data") or {}).get("classification", "—")
    rows = []
    for c in data.get("claims", []):
        num, sym = c.get("numeric"), c.get("symbolic")
        if isinstance(num, dict) and num.get("kind") == "measurement":
            ntext = f"{_fmt(num.get('max_defect'))} / {_fmt(num.get('tolerance'))}"
        else:
            ntext = num.get("verdict", "—") if isinstance(num, dict) else "—"
        rows.append(
            f"| [{name}]({name}/README.md) | {kind} | {c['property']}{'' if c.get('claimed_true', True) else ' (false)'} | "
            f"**{c['verdict']}** | {'yes' if c.get('as_expected') else 'NO'} | "
            f"{sym.get('verdict', 'none') if isinstance(sym, dict) else 'none'} | {ntext} | {roll} |")
    if not data.get("claims"):
        rows.append(f"| [{name}]({name}/README.md) | {kind} | — | — | {'yes' if data.get('passed_as_expected') else 'NO'} | — | — | {roll} |")
    summary = {"architecture": name, "control": bool(data.get("control")),
               "passed_as_expected": bool(data.get("passed_as_expected")),
               "claims": {c["property"]: c["verdict"] for c in data.get("claims", [])}}
    return rows, summary


def _on_disk(root: Path) -> dict[str, dict[str, Any]]:
    """Every architecture report under root (report.json in a sub-folder), by name."""
    found: dict[str, dict[str, Any]] = {}
    for p in sorted(root.glob("*/report.json")):
        if p.parent.name.startswith("."):
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("architecture"), str) and isinstance(data.get("claims"), list):
            found[data["architecture"]] = data
    return found


def write_index(results: Sequence[ArchitectureResult], root: Path | str, extra: Sequence[str] = (),
                order: Sequence[str] = ()) -> Path:
    """reports/README.md and index.json over every report in the folder: merged, never rebuilt from fewer.

    The rows come from each architecture's report.json on disk (the ones just written and every earlier one), with
    `results` taking precedence, so a run over one architecture updates its rows and keeps everybody else's;
    index.json entries whose folder has gone are kept too (marked `"report": "missing"`). `order` (registry
    order) sorts the rows; names it does not know follow alphabetically. Both files are written atomically.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    reports = _on_disk(root)
    for res in results:
        reports[res.name] = to_json(res)
    previous: list[dict[str, Any]] = []
    try:
        old = json.loads((root / "index.json").read_text(encoding="utf-8"))
        previous = [e for e in old if isinstance(e, dict) and isinstance(e.get("architecture"), str)] if isinstance(old, list) else []
    except (OSError, ValueError):
        pass
    rank = {n: i for i, n in enumerate(order)}
    names = sorted(set(reports) | {e["architecture"] for e in previous}, key=lambda n: (rank.get(n, len(rank)), n))
    lines = ["# Verification reports", "", "Every architecture reported in this folder and its claims. *Controls* claim a "
             "property falsely on purpose; for them `violated` is the expected verdict.", "",
             "| architecture | kind | claim | verdict | as expected | symbolic | numeric max defect / tolerance | rollout |",
             "|---|---|---|---|---|---|---|---|"]
    summary = []
    kept = {e["architecture"]: e for e in previous}
    for name in names:
        if name in reports:
            rows, entry = _index_rows(reports[name])
        else:  # listed before, its folder is gone: keep the entry, say so
            entry = dict(kept[name], report="missing")
            rows = [f"| {name} | — | — | — | {'yes' if entry.get('passed_as_expected') else 'NO'} | — | — | report missing |"]
        lines += rows
        summary.append(entry)
    lines += [""] + list(extra)
    hook("index")
    atomic_write_text(root / "index.json", json.dumps(summary, indent=1))
    atomic_write_text(root / "README.md", "\n".join(lines) + "\n")
    return root / "README.md"
