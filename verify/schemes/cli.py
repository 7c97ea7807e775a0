"""Command line: ``verify scheme NAME``, ``verify scheme --file tableau.json``, ``verify scheme --list``.

Exit status 0 on success, 2 on bad input (unknown name, unreadable or invalid
tableau, a file that is too large, not UTF-8, or holds a coefficient beyond the
parser's limits: exponent towers, huge integers, deep nesting), with a one-line
explanation on stderr. A property whose exact computation (including building
the number field of the coefficients) runs past --time-limit is `undecided`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Optional, Sequence, TextIO

from . import catalogue
from .exact import SchemeError
from .properties import DEFAULT_LIMIT, Finding, analyse, layer_matrix, max_stable_step
from .tableau import ButcherTableau, Scheme
from verify.timelimit import run_with_time_limit


class _UsageError(Exception):
    pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


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


MAX_FILE_BYTES = 1 << 20  # a tableau file larger than 1 MiB is refused before it is parsed
MAX_STAGES = 64  # stages of a tableau read from a file (and rows of --layer)


def _reject_constant(name: str) -> None:
    raise SchemeError(f"{name} is not a number a tableau can hold; expected exact numbers such as \"1/3\"")


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SchemeError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise SchemeError(f"{what} is nested too deeply to be a tableau (expected a list of rows of numbers)") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise SchemeError(f"{what} holds a number that cannot be read: {exc}") from None


def _load_file(path: str) -> ButcherTableau:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SchemeError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise SchemeError(f"{path} is larger than {MAX_FILE_BYTES} bytes; a tableau file is a small JSON document")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemeError(f"{path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); save it as "
                          f"UTF-8 JSON") from None
    data = _json(text, path)
    if isinstance(data, dict) and isinstance(data.get("A"), list) and len(data["A"]) > MAX_STAGES:
        raise SchemeError(f"{path}: A has {len(data['A'])} rows; at most {MAX_STAGES} stages are read from a file")
    return ButcherTableau.from_json(data)


def _read_input(args: argparse.Namespace) -> tuple[Scheme, object]:
    scheme: Scheme = _load_file(args.file) if args.file else catalogue.get(args.name)
    W = None
    if args.layer:
        rows = _json(args.layer, "--layer")
        if isinstance(rows, list) and len(rows) > MAX_STAGES:
            raise SchemeError(f"--layer has {len(rows)} rows; at most {MAX_STAGES}")
        W = layer_matrix(rows)
    return scheme, W


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "scheme":
        args_in = args_in[1:]
    try:
        args = _parser().parse_args(args_in)
    except _UsageError as exc:
        print(f"verify scheme: error: {exc}. See `verify scheme --help`.", file=err)
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
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        print(f"verify scheme: error: --time-limit={args.time_limit!r}: expected a finite number of seconds > 0. "
              f"Fix: pass e.g. --time-limit 20 (the default)", file=err)
        return 2
    try:
        # reading is bounded by the parser's size limits, and by the time limit as well
        ok, found = run_with_time_limit(_read_input, args.time_limit, args)
        if not ok:
            raise SchemeError(f"reading the input ran past the time limit of {args.time_limit:g} s; it is too large "
                              f"or too complicated to be a tableau (raise --time-limit if it is one)")
        scheme, W = found
    except SchemeError as exc:
        print(f"verify scheme: error: {_one_line(str(exc))}", file=err)
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

        path = write_scheme_page(scheme, args.report, findings=findings)  # written atomically
        print(f"\nwrote {path}", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
