"""The `verify` command: list, check, train, report, bench, scheme.

Exit status, every command:
  0  every claim as expected (`check`: every claim checked is proved or holds; `report`: every genuine
     claim proved or holds and every false claim of a negative control violated; `--strict` applies
     the `check` rule to `report` too);
  1  a claim not as expected (including `error` and `undecided` verdicts, and for `report` an
     architecture that could not be checked);
  2  bad input or usage (an unknown option value, architecture or size, a bad environment variable,
     a folder another verify command is writing to): one line on stderr, and nothing is written.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from verify.errors import InputError, VerifyError

DEFAULT_REPORTS = Path("reports")  # relative: ./reports of the folder the command runs in
MAX_THREADS = 1024


def threads() -> None:
    """One intra-op thread unless VERIFY_THREADS says otherwise (validated: a bad value is an InputError).

    The models here are small: with two threads on a two-core machine a training step
    was measured 10-15× slower than with one (synchronisation dominates tiny kernels).
    """
    import os

    raw = os.environ.get("VERIFY_THREADS", "").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_THREADS:
        raise InputError("VERIFY_THREADS", os.environ.get("VERIFY_THREADS"), f"a whole number of threads from 1 to {MAX_THREADS}",
                         "unset it (one thread: the fastest for these small models) or set e.g. VERIFY_THREADS=2")
    import torch

    torch.set_num_threads(n)


def _load_plugins(mods: list[str] | None) -> None:
    """--plugin modules, then the registry (built-ins, entry points, VERIFY_PLUGINS); a module that does not import
    is one line on stderr, and every other architecture still runs."""
    from verify.declare.registry import load_all, load_errors, load_plugin

    for m in mods or []:
        load_plugin(m, "--plugin")
    load_all()
    for line in load_errors():
        print(f"verify: warning: {line}", file=sys.stderr)


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


def _validate(args: argparse.Namespace) -> None:
    """Numeric options and the device, before anything runs or is written (InputError: exit 2)."""
    import math

    if getattr(args, "inputs", None) is not None and args.inputs < 1:
        raise InputError("--inputs", args.inputs, "a whole number >= 1 (seeded inputs per claim)",
                         "pass e.g. --inputs 256, or leave it out for the engine's budget (8192)")
    if getattr(args, "examples", None) is not None and args.examples < 0:
        raise InputError("--examples", args.examples, "a whole number >= 0 (hypothesis examples per claim; 0 skips them)",
                         "pass e.g. --examples 60, or leave it out")
    if hasattr(args, "seed") and not 0 <= args.seed <= 2 ** 32 - 1:
        raise InputError("--seed", args.seed, "a whole number from 0 to 2**32 - 1", "pass e.g. --seed 0")
    if hasattr(args, "symbolic_timeout") and not (math.isfinite(args.symbolic_timeout) and args.symbolic_timeout > 0):
        raise InputError("--symbolic-timeout", args.symbolic_timeout, "a finite number of seconds > 0",
                         "pass e.g. --symbolic-timeout 20 (the default)")
    if hasattr(args, "rollout_steps") and args.rollout_steps < 0:
        raise InputError("--rollout-steps", args.rollout_steps, "a whole number >= 0 (0 skips the rollout)",
                         "pass e.g. --rollout-steps 10000 (the default) or 0")
    if getattr(args, "symbolic_only", False) and getattr(args, "numeric_only", False):
        raise InputError("--symbolic-only --numeric-only", True, "at most one of them (together they check nothing)",
                         "drop one of the two")
    if getattr(args, "jobs", None) is not None and not 1 <= args.jobs <= 64:
        raise InputError("--jobs", args.jobs, "a whole number of worker processes from 1 to 64",
                         "pass e.g. --jobs 2 on a two-core machine (each worker uses VERIFY_THREADS threads), or leave it out")
    if getattr(args, "device", None) is not None:
        from verify.train.training import pick_device

        pick_device(args.device, "--device")
    if getattr(args, "checkpoint", None) is not None and not Path(args.checkpoint).is_dir():
        raise InputError("--checkpoint", args.checkpoint, "an existing checkpoint folder (model.safetensors + checkpoint.json)",
                         "point at reports/NAME/checkpoint, or train one with `verify train NAME`")


def _require_size(archs: list, size: str) -> None:
    lacking = [a.name for a in archs if size not in a.sizes]
    if lacking:
        known = sorted({s for a in archs for s in a.sizes})
        raise InputError("--size", size, f"a size every selected architecture has ({', '.join(known)})",
                         f"pass --size quick or --size full ({len(lacking)} of {len(archs)} selected architectures lack "
                         f"{size!r}: {', '.join(lacking[:5])}{'…' if len(lacking) > 5 else ''})")


def cmd_check(args: argparse.Namespace) -> int:
    from verify.checking.api import check
    from verify.declare.registry import get
    from verify.report.pages import to_json

    arch = get(args.name)
    _require_size([arch], args.size)
    result = check(arch, checkpoint=args.checkpoint, **_check_kwargs(args))
    print(json.dumps(to_json(result), indent=1, default=str) if args.json else _table(result))
    ok = not result.errors and all(r.verdict.passed for r in result.results)
    return 0 if ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from verify.declare.registry import get
    from verify.files import folder_lock, recover
    from verify.train.training import train

    arch = get(args.name)
    _require_size([arch], args.size)
    out_root = Path(args.out)
    with folder_lock(out_root, "verify train"):
        recover(out_root)
        out = out_root / args.name / "checkpoint"
        t = train(arch, args.size, seed=args.seed, device=args.device, progress=not args.quiet, out_dir=out)
    from verify.declare.registry import get_task
    from verify.train.loss_names import loss_label

    label = loss_label(get_task(arch.task_for(args.size)))
    print(f"trained {args.name} [{args.size}] in {t.seconds:.1f} s on {t.device}: held-out "
          f"{label if label == 'MSE' else 'loss (' + label + ')'} {t.test_loss:.3g}; saved {out}")
    return 0


@dataclass(frozen=True)
class _Reported:
    """What one architecture's report came to, small enough to cross a process boundary (the worker of `--jobs`)."""

    name: str
    written: bool  # its report was written (False: it could not be checked; `text` says why)
    passed: bool  # every claim as expected
    strict: bool  # every claim proved or holds (--strict)
    text: str  # the verdict table, or the error line


def _report_architecture(arch, args: argparse.Namespace, out: Path) -> _Reported:
    """Check one architecture (loading a matching checkpoint with --cache) and write its report, figures and checkpoint
    as one unit. Never raises for a model's or a library's failure: one broken architecture must not lose the others'."""
    import shutil

    from verify.checking.api import check
    from verify.files import scratch_path
    from verify.report.pages import write_architecture

    target = out / arch.name
    reuse = args.reuse_checkpoints and (target / "checkpoint" / "checkpoint.json").is_file()
    why = ""
    if args.cache and not reuse and not args.symbolic_only and arch.task is not None:
        from verify.train.training import cached_checkpoint

        try:
            reuse, why = cached_checkpoint(target / "checkpoint", arch, args.size, args.seed, args.device)
        except Exception as exc:  # a fingerprint that cannot be computed is a miss: train as without --cache
            reuse, why = False, f"no fingerprint ({type(exc).__name__}: {exc})"
    fresh = None if reuse else scratch_path(target)
    try:
        result = check(arch, checkpoint=target / "checkpoint" if reuse else None, checkpoint_dir=fresh,
                       **_check_kwargs(args))
        if reuse and why and result.trained is not None:
            result.trained.origin = f"loaded from the cache ({why})"
        # the report, its figures and its checkpoint replace the previous ones as one unit
        write_architecture(result, out, checkpoint=fresh if fresh is not None and fresh.is_dir() else None)
    except VerifyError as exc:
        return _Reported(arch.name, False, False, False, f"{arch.name}: {exc}")
    except Exception as exc:  # a user's model or a library that raises outside every guarded stage
        return _Reported(arch.name, False, False, False, f"{arch.name}: error: {type(exc).__name__}: {exc}")
    finally:
        if fresh is not None and fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    return _Reported(arch.name, True, result.passed, all(c.verdict.passed for c in result.results), _table(result))


def _expected_seconds(out: Path, name: str) -> float:
    """The previous report's seconds (check plus training) for `name` under `out`, or +inf when there is none: the
    schedule of `--jobs` starts the longest first (an unknown one may be long), so no worker is left with it at the end."""
    try:
        data = json.loads((out / name / "report.json").read_text(encoding="utf-8"))
        return float(data.get("seconds") or 0.0) + float((data.get("training") or {}).get("seconds") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return math.inf


def _worker_start(plugins: list[str] | None) -> None:
    """A `--jobs` worker: the parent's thread setting and registry (built-ins, entry points, VERIFY_PLUGINS, --plugin)."""
    threads()
    _load_plugins(plugins)


def _worker_report(name: str, args: argparse.Namespace, out: Path) -> _Reported:
    from verify.declare.registry import get

    try:
        arch = get(name)
    except VerifyError as exc:  # registered in the parent's process only (not through a module the worker can import)
        return _Reported(name, False, False, False, f"{name}: not registered in a worker process ({exc}); "
                                                    f"run with --jobs 1, or register it through --plugin or an entry point")
    return _report_architecture(arch, args, out)


def _report_in_workers(archs: list, args: argparse.Namespace, out: Path, bar) -> list[_Reported]:
    """Each architecture on the first free one of `args.jobs` worker processes, longest expected first. The parent holds
    the folder lock for all of them; each worker writes whole architecture folders (atomically), never the index.

    A worker that dies (a segfault in a library, os._exit in a model, the out-of-memory killer) breaks the pool and every
    architecture still queued with it; those are rerun one per fresh process, so only the one that kills its process
    is reported as such and every other one still gets its report."""
    order = sorted(archs, key=lambda a: -_expected_seconds(out, a.name))
    worker_args = argparse.Namespace(**{**vars(args), "quiet": True})  # no nested progress bars from the workers
    done: list[_Reported] = []

    def settle(rep: _Reported) -> None:
        done.append(rep)
        bar.update(1)
        if not rep.written:
            print(rep.text, file=sys.stderr)
        elif not args.quiet:
            bar.write(rep.text)

    broken = _pool_round([a.name for a in order], args.jobs, worker_args, out, settle)
    for name in broken:  # alone in its own process: a death now is this architecture's own
        if _pool_round([name], 1, worker_args, out, settle):
            settle(_Reported(name, False, False, False, f"{name}: error: the process checking it died (a crash in the "
                             f"model or a library, or the out-of-memory killer); rerun it alone for the traceback: "
                             f"verify report {name} --out {out}"))
    return done


def _pool_round(names: list[str], jobs: int, worker_args: argparse.Namespace, out: Path, settle) -> list[str]:
    """Report `names` on `jobs` fresh worker processes, handing each outcome to `settle`; returns the names whose worker
    pool broke before they were reported."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    broken: list[str] = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_start, initargs=(worker_args.plugin,)) as pool:
        futures = {pool.submit(_worker_report, n, worker_args, out): n for n in names}
        for fut in as_completed(futures):
            try:
                settle(fut.result())
            except BrokenProcessPool:
                broken.append(futures[fut])
    return [n for n in names if n in broken]  # in the schedule's order


def cmd_report(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from verify.declare.registry import all_architectures, get, load_errors
    from verify.files import folder_lock, hook, recover
    from verify.report.pages import write_index

    archs = [get(n) for n in dict.fromkeys(args.names)] if args.names else all_architectures()
    if not archs:
        raise InputError("architectures", args.names, "at least one registered architecture",
                         "run `verify list`, or register one (see the README)")
    _require_size(archs, args.size)
    out = Path(args.out)
    reported: list[_Reported] = []
    start = time.perf_counter()
    with folder_lock(out, "verify report"):
        hook("report-locked")
        for line in recover(out):
            print(f"verify: tidied what an interrupted run left in {out}: {line}", file=sys.stderr)
        if args.jobs > 1 and len(archs) > 1:
            with tqdm(total=len(archs), desc=f"verify report ({args.jobs} workers)", disable=args.quiet) as bar:
                reported = _report_in_workers(archs, args, out, bar)
        else:
            for arch in tqdm(archs, desc="verify report", disable=args.quiet):
                rep = _report_architecture(arch, args, out)
                reported.append(rep)
                if not rep.written:
                    print(rep.text, file=sys.stderr)
                elif not args.quiet:
                    tqdm.write(rep.text)
        if not args.names:
            write_scheme_pages(out, args.quiet)
        extra = []
        broken = load_errors() if not args.names else []
        if broken:
            extra += ["Plugins that did not import (their architectures are missing from this run):", ""]
            extra += [f"- {line}" for line in broken] + [""]
        if (out / "benchmarks.md").is_file():
            extra.append("Benchmarks: [benchmarks.md](benchmarks.md).")
        if (out / "power" / "README.md").is_file():
            extra.append("Detection power and false alarms (the verifier's own credentials, `python -m benchmarks.power`): "
                         "[power/README.md](power/README.md).")
        else:
            extra.append("Detection power and false alarms: not in this folder yet; `python -m benchmarks.power --out "
                         f"{os.path.relpath(out.resolve(), Path.cwd().resolve())}` writes them (`make reports` does).")
        if (out / "schemes").is_dir():
            extra.append("Schemes: [schemes/](schemes/).")
        # the rows come from the report.json files just written (by this process or its workers) and the earlier ones
        write_index([], out, extra, order=[a.name for a in all_architectures()])
    total = time.perf_counter() - start
    written = [r for r in reported if r.written]
    ok = not broken and len(written) == len(archs) and all(r.strict if args.strict else r.passed for r in written)
    print(f"{len(written)} architectures reported in {total:.1f} s under {out}"
          + (f" ({args.jobs} worker processes)" if args.jobs > 1 and len(archs) > 1 else "") + ": "
          + ("everything as expected" if ok else "SOME RESULTS NOT AS EXPECTED"))
    return 0 if ok else 1


def _scheme_main(rest: list[str]) -> int:
    from verify.schemes import cli as scheme_cli

    return scheme_cli.main(rest)


def write_scheme_pages(out: Path, quiet: bool) -> int:
    """A page per catalogued scheme (tableau, every property with its derivation, stability plot)."""
    from tqdm.auto import tqdm

    from verify.files import atomic_write_text
    from verify.schemes import catalogue
    from verify.schemes.report import write_scheme_page

    folder = out / "schemes"
    folder.mkdir(parents=True, exist_ok=True)
    names = catalogue.names()
    lines = ["# Schemes", "", "Exact analysis of every catalogued scheme (`verify scheme NAME`).", ""]
    for name in tqdm(names, desc="scheme pages", disable=quiet):
        page = write_scheme_page(catalogue.get(name), folder)
        lines.append(f"- [{name}]({page.name})")
    atomic_write_text(folder / "README.md", "\n".join(lines) + "\n")
    return len(names)


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks import figures as bench
    except ModuleNotFoundError:
        # the `verify` script's sys.path starts at .venv/bin, not the checkout: the benchmarks live beside the verify
        # package of an editable install (a wheel install has none, and says so)
        root = Path(__file__).resolve().parent.parent
        if not (root / "benchmarks" / "figures.py").is_file():
            raise VerifyError(f"verify bench: the benchmarks folder is not beside the verify package ({root}); "
                              f"expected a checkout of the project installed with `pip install -e .`; fix: run "
                              f"`verify bench` from such a checkout (or `python -m benchmarks.figures` there)")
        sys.path.insert(0, str(root))
        from benchmarks import figures as bench
    from verify.files import folder_lock

    with folder_lock(Path(args.out), "verify bench"):
        return bench.main(Path(args.out), quick=args.quick, fold=args.fold)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (and exit status 2), not argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")


def _add_check_options(p: argparse.ArgumentParser, size: str) -> None:
    p.add_argument("--size", default=size, help=f"model size to train/check: quick or full (default {size})")
    p.add_argument("--seed", type=int, default=0, help="seed for training, sampling and hypothesis, 0..2**32-1 (default 0)")
    p.add_argument("--symbolic-only", action="store_true", help="skip training and the numeric stage")
    p.add_argument("--numeric-only", action="store_true", help="skip the symbolic stage")
    p.add_argument("--symbolic-timeout", type=float, default=20.0, help="seconds per symbolic step before 'undecided' (> 0)")
    p.add_argument("--inputs", type=int, default=None,
                   help="seeded inputs per claim, over every scale, >= 1 (default: the engine's budget, 8192)")
    p.add_argument("--examples", type=int, default=None, help="hypothesis examples per claim, >= 0 (default: 60)")
    p.add_argument("--rollout-steps", type=int, default=10_000, help="long-rollout length for Hamiltonian tasks (>= 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="verify", description="Check structure claims of neural networks, symbolically and numerically. "
                     "Exit status: 0 every claim as expected, 1 a claim not as expected, 2 bad input or usage.")
    parser.add_argument("--plugin", action="append", help="import this module first (it may register architectures); repeatable")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    p.add_argument("--out", default=str(DEFAULT_REPORTS), help="reports folder (default: ./reports); writes OUT/NAME/checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="train, check and write reports for every registered architecture (the main job)")
    p.add_argument("names", nargs="*", help="architectures (default: all)")
    p.add_argument("--out", default=str(DEFAULT_REPORTS), help="reports folder (default: ./reports of the working folder)")
    p.add_argument("--reuse-checkpoints", action="store_true", help="load OUT/<name>/checkpoint instead of training")
    p.add_argument("--cache", action="store_true",
                   help="load OUT/<name>/checkpoint only when its training fingerprint matches the current code, "
                        "data, settings and library versions (training is deterministic, so it is the model training "
                        "would produce); otherwise train and save")
    p.add_argument("--strict", action="store_true", help="exit 1 unless every claim (controls' included) is proved or holds")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, each checking one architecture at a time, longest first (default 1)")
    _add_check_options(p, "full")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("scheme", help="exact order, symplecticity and stability of a scheme (verify scheme --help)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: _scheme_main(a.rest))

    p = sub.add_parser("bench", help="measure the speed figures and write OUT/benchmarks.md")
    p.add_argument("--out", default=str(DEFAULT_REPORTS), help="reports folder (default: ./reports)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for tests)")
    p.add_argument("--fold", action="store_true",
                   help="measure nothing: refresh the optimiser and manifold sections of OUT/benchmarks.md from their "
                        "saved results (python -m benchmarks.optimizers / benchmarks.manifold --json ...)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scheme"]:  # its own parser: `verify scheme --help` shows the scheme options
        return _scheme_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        threads()
        _validate(args)
        _load_plugins(args.plugin)
        return args.func(args)
    except VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("verify: interrupted; files already written are complete, nothing half-written was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
