"""The `verify` command: list, check, train, report, bench (and scheme, once schemes land).

Exit status of `check`: 0 only when every claim checked is proved or holds.
Exit status of `report`: 0 only when every genuine claim is proved or holds and every
false claim of a negative control is violated (the registry came out as expected);
`--strict` applies the `check` rule to `report` too.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from verify.errors import VerifyError

DEFAULT_REPORTS = Path(__file__).resolve().parent.parent / "reports"


def threads() -> None:
    """One intra-op thread unless VERIFY_THREADS says otherwise.

    The models here are small: with two threads on a two-core machine a training step
    was measured 10-15× slower than with one (synchronisation dominates tiny kernels).
    """
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("VERIFY_THREADS", "1")))


def _load_plugins(mods: list[str] | None) -> None:
    from verify.declare.registry import _load_plugin

    for m in mods or []:
        _load_plugin(f"{m} (--plugin)", lambda m=m: importlib.import_module(m))


def _table(result) -> str:
    rows = [f"{result.name} [{result.size}]  ({result.seconds:.1f} s)"]
    for r in result.results:
        exp = "" if r.claim.expected else "  (false claim of a control)"
        rows.append(f"  {r.claim.name:<18} {r.verdict.value:<10}{exp}")
        if r.symbolic is not None:
            rows.append(f"      symbolic: {r.symbolic.summary}")
        else:
            rows.append("      symbolic: no symbolic form (numeric only)")
        if r.numeric is not None:
            rows.append(f"      numeric:  {r.numeric.summary}")
            fix = getattr(r.numeric, "fix", "")
            if fix:
                rows.append(f"      fix:      {fix}")
    if result.rollout is not None:
        rows.append(f"  rollout: {result.rollout.summary}")
    for e in result.errors:
        rows.append(f"  error: {e}")
    return "\n".join(rows)


def cmd_list(args: argparse.Namespace) -> int:
    from verify.declare.registry import all_architectures

    archs = all_architectures()
    if args.json:
        print(json.dumps([{"name": a.name, "task": a.task, "control": a.is_control, "origin": a.origin,
                           "claims": [{"property": c.name, "claimed_true": c.expected} for c in a.claims]} for a in archs], indent=1))
        return 0
    for a in archs:
        claims = ", ".join(c.name + ("" if c.expected else " (false)") for c in a.claims)
        print(f"{a.name:<24} {'control' if a.is_control else 'genuine':<8} task={a.task or '-':<13} {claims}")
    from verify.declare.registry import PLUGIN_NOTES

    for note in PLUGIN_NOTES:
        print(f"note: {note}")
    return 0


def _check_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        size=args.size, seed=args.seed, symbolic=not args.numeric_only, numeric=not args.symbolic_only,
        time_limit=args.symbolic_timeout, n_inputs=args.inputs, max_examples=args.examples,
        rollout_steps=args.rollout_steps, device=args.device, progress=not args.quiet,
    )


def cmd_check(args: argparse.Namespace) -> int:
    from verify.checking.api import check
    from verify.report.pages import to_json

    result = check(args.name, checkpoint=args.checkpoint, **_check_kwargs(args))
    print(json.dumps(to_json(result), indent=1, default=str) if args.json else _table(result))
    ok = not result.errors and all(r.verdict.passed for r in result.results)
    return 0 if ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from verify.train.training import train

    out = Path(args.out) / args.name / "checkpoint"
    t = train(args.name, args.size, seed=args.seed, device=args.device, progress=not args.quiet, out_dir=out)
    print(f"trained {args.name} [{args.size}] in {t.seconds:.1f} s on {t.device}: held-out MSE {t.test_loss:.3g}; saved {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from verify.checking.api import check
    from verify.declare.registry import all_architectures, get
    from verify.report.pages import write_architecture, write_index

    archs = [get(n) for n in args.names] if args.names else all_architectures()
    out = Path(args.out)
    results = []
    start = time.perf_counter()
    for arch in tqdm(archs, desc="verify report", disable=args.quiet):
        ckpt_dir = out / arch.name / "checkpoint"
        reuse = args.reuse_checkpoints and (ckpt_dir / "checkpoint.json").is_file()
        try:
            result = check(arch, checkpoint=ckpt_dir if reuse else None, checkpoint_dir=None if reuse else ckpt_dir,
                           **_check_kwargs(args))
        except VerifyError as exc:  # one broken architecture must not lose the others' reports
            print(f"{arch.name}: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # nor may a user's model or a library that raises outside every guarded stage
            print(f"{arch.name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        write_architecture(result, out)
        results.append(result)
        if not args.quiet:
            tqdm.write(_table(result))
    if not args.names:
        write_scheme_pages(out, args.quiet)
    extra = []
    if (out / "benchmarks.md").is_file():
        extra.append("Benchmarks: [benchmarks.md](benchmarks.md).")
    extra.append("Detection power and false alarms (the verifier's own credentials, `python -m benchmarks.power`): "
                 "[power/README.md](power/README.md).")
    if (out / "schemes").is_dir():
        extra.append("Schemes: [schemes/](schemes/).")
    if not args.names:
        write_index(results, out, extra)
    total = time.perf_counter() - start
    ok = len(results) == len(archs) and all(
        (r.passed if not args.strict else all(c.verdict.passed for c in r.results)) for r in results
    )
    print(f"{len(results)} architectures reported in {total:.1f} s under {out}: "
          + ("everything as expected" if ok else "SOME RESULTS NOT AS EXPECTED"))
    return 0 if ok else 1


def _scheme_main(rest: list[str]) -> int:
    from verify.schemes import cli as scheme_cli

    return scheme_cli.main(rest)


def write_scheme_pages(out: Path, quiet: bool) -> int:
    """A page per catalogued scheme (tableau, every property with its derivation, stability plot)."""
    from tqdm.auto import tqdm

    from verify.schemes import catalogue
    from verify.schemes.report import write_scheme_page

    folder = out / "schemes"
    folder.mkdir(parents=True, exist_ok=True)
    names = catalogue.names()
    lines = ["# Schemes", "", "Exact analysis of every catalogued scheme (`verify scheme NAME`).", ""]
    for name in tqdm(names, desc="scheme pages", disable=quiet):
        page = write_scheme_page(catalogue.get(name), folder)
        lines.append(f"- [{name}]({page.name})")
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return len(names)


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import figures as bench

    return bench.main(Path(args.out), quick=args.quick)


def _add_check_options(p: argparse.ArgumentParser, size: str) -> None:
    p.add_argument("--size", default=size, help=f"model size to train/check: quick or full (default {size})")
    p.add_argument("--seed", type=int, default=0, help="seed for training, sampling and hypothesis (default 0)")
    p.add_argument("--symbolic-only", action="store_true", help="skip training and the numeric stage")
    p.add_argument("--numeric-only", action="store_true", help="skip the symbolic stage")
    p.add_argument("--symbolic-timeout", type=float, default=20.0, help="seconds per symbolic step before 'undecided'")
    p.add_argument("--inputs", type=int, default=None,
                   help="seeded inputs per claim, over every scale (default: the engine's budget, 8192)")
    p.add_argument("--examples", type=int, default=None, help="hypothesis examples per claim (default: 60)")
    p.add_argument("--rollout-steps", type=int, default=10_000, help="long-rollout length for Hamiltonian tasks")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verify", description="Check structure claims of neural networks, symbolically and numerically.")
    parser.add_argument("--plugin", action="append", help="import this module first (it may register architectures); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered architectures and their claims")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", help="check one architecture; exit 0 only when every claim is proved or holds")
    p.add_argument("name")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder to load instead of training")
    p.add_argument("--json", action="store_true", help="print the evidence as JSON")
    _add_check_options(p, "quick")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train one architecture and save a safetensors checkpoint")
    p.add_argument("name")
    p.add_argument("--size", default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=str(DEFAULT_REPORTS))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="train, check and write reports for every registered architecture (the main job)")
    p.add_argument("names", nargs="*", help="architectures (default: all)")
    p.add_argument("--out", default=str(DEFAULT_REPORTS))
    p.add_argument("--reuse-checkpoints", action="store_true", help="load reports/<name>/checkpoint instead of training")
    p.add_argument("--strict", action="store_true", help="exit 1 unless every claim (controls' included) is proved or holds")
    _add_check_options(p, "full")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("scheme", help="exact order, symplecticity and stability of a scheme (verify scheme --help)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: _scheme_main(a.rest))

    p = sub.add_parser("bench", help="measure the speed figures and write reports/benchmarks.md")
    p.add_argument("--out", default=str(DEFAULT_REPORTS))
    p.add_argument("--quick", action="store_true", help="smaller sizes (for tests)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scheme"]:  # its own parser: `verify scheme --help` shows the scheme options
        return _scheme_main(argv[1:])
    args = parser.parse_args(argv)
    threads()
    try:
        _load_plugins(args.plugin)
        return args.func(args)
    except VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
