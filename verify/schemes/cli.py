"""Command line: ``verify scheme NAME``, ``verify scheme --file tableau.json``, ``verify scheme --list``.

Exit status 0 on success, 2 on bad input (unknown name, unreadable or invalid
tableau), with a one-line explanation on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from . import catalogue
from .exact import SchemeError
from .properties import DEFAULT_LIMIT, Finding, analyse, layer_matrix, max_stable_step
from .tableau import ButcherTableau, Scheme


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="verify scheme", description="Exact properties of a time-discretisation scheme.")
    p.add_argument("name", nargs="?", help="catalogue name, e.g. rk4, gauss-legendre-3, stormer-verlet")
    p.add_argument("--file", help='JSON tableau {"A": [["0","0"],["1/2","0"]], "b": [...], "c": [...]}')
    p.add_argument("--list", action="store_true", help="list the catalogue")
    p.add_argument("--layer", help="JSON matrix W of a linear layer dx/dt = W x: report the largest stable step")
    p.add_argument("--report", help="directory: also write a Markdown page (and stability plot) there")
    p.add_argument("--time-limit", type=float, default=DEFAULT_LIMIT, help="seconds per property (default 20)")
    return p


def format_finding(f: Finding) -> str:
    value = f.value
    return (f"- {f.name}: {value}  [{f.status}, {f.seconds * 1000:.1f} ms]\n"
            f"    derivation: {f.derivation}")


def _load_file(path: str) -> ButcherTableau:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SchemeError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemeError(f"{path} is not valid JSON: {exc}") from exc
    return ButcherTableau.from_json(data)


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "scheme":
        args_in = args_in[1:]
    try:
        args = _parser().parse_args(args_in)
    except _UsageError as exc:
        print(f"verify scheme: error: {exc}", file=err)
        return 2
    if args.list:
        lit = catalogue.LITERATURE
        for name in catalogue.names():
            extra = f"  (stages={lit[name][0]}, order={lit[name][1]})" if name in lit else ""
            print(f"{name}{extra}", file=out)
        return 0
    if bool(args.name) == bool(args.file):
        print("verify scheme: error: give exactly one of NAME, --file PATH or --list", file=err)
        return 2
    try:
        scheme: Scheme = _load_file(args.file) if args.file else catalogue.get(args.name)
        W = layer_matrix(json.loads(args.layer)) if args.layer else None
    except SchemeError as exc:
        print(f"verify scheme: error: {exc}", file=err)
        return 2
    except json.JSONDecodeError as exc:
        print(f"verify scheme: error: --layer is not a JSON matrix: {exc}", file=err)
        return 2
    print(str(scheme), file=out)
    if getattr(scheme, "conversions", ()):
        print("float conversions:", *scheme.conversions, sep="\n  ", file=out)
    if getattr(scheme, "note", ""):
        print(f"note: {scheme.note}", file=out)
    print("", file=out)
    findings = analyse(scheme, limit=args.time_limit)
    if W is not None:
        findings.append(max_stable_step(scheme, W.tolist(), limit=args.time_limit))
    for f in findings:
        print(format_finding(f), file=out)
    if args.report:
        from .report import write_scheme_page

        path = write_scheme_page(scheme, args.report, findings=findings)
        print(f"\nwrote {path}", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
