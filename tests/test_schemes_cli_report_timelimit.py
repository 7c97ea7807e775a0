"""Command line, report pages and the time-limit helper."""

import io
import json
import signal
import threading
import time

from verify.schemes import catalogue as C
from verify.schemes.cli import main
from verify.schemes.properties import Finding, order
from verify.schemes.report import write_scheme_page
from verify.timelimit import BACKSTOP, run_with_time_limit

BACKSTOP_WAIT = BACKSTOP + 0.2


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_named_scheme_prints_tableau_and_properties():
    code, out, _ = _run(["scheme", "gauss-legendre-2"])
    assert code == 0
    assert "gauss-legendre-2" in out and "symplectic: True" in out and "A-stable: True" in out
    assert "derivation:" in out


def test_cli_file_and_layer(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"A": [["0"]], "b": ["1"], "c": ["0"]}))
    code, out, _ = _run(["scheme", "--file", str(p), "--layer", "[[-1, 2], [-2, -1]]"])
    assert code == 0 and "largest stable step: 2/5" in out


def test_cli_surd_json(tmp_path):
    p = tmp_path / "g2.json"
    p.write_text(json.dumps({"A": [["1/4", "1/4 - sqrt(3)/6"], ["1/4 + sqrt(3)/6", "1/4"]], "b": ["1/2", "1/2"],
                             "c": ["1/2 - sqrt(3)/6", "1/2 + sqrt(3)/6"]}))
    code, out, _ = _run(["scheme", "--file", str(p)])
    assert code == 0 and "order: 4" in out


def test_cli_list():
    code, out, _ = _run(["scheme", "--list"])
    assert code == 0 and "rk4" in out and len(out.splitlines()) >= 30


def test_cli_bad_input_returns_2_with_message(tmp_path):
    code, _, err = _run(["scheme", "no-such"])
    assert code == 2 and "unknown scheme" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"A": [[0.5]], "b": ["1"]}))
    code, _, err = _run(["scheme", "--file", str(bad)])
    assert code == 2 and "float" in err
    bad.write_text("{not json")
    code, _, err = _run(["scheme", "--file", str(bad)])
    assert code == 2 and "JSON" in err
    code, _, err = _run(["scheme", "--file", str(tmp_path / "missing.json")])
    assert code == 2 and "cannot read" in err
    code, _, err = _run(["scheme"])
    assert code == 2
    bad.write_text(json.dumps({"A": [["0", "0"], ["1/2", "0"]], "b": ["0", "1"], "c": ["0", "1"]}))
    code, _, err = _run(["scheme", "--file", str(bad)])
    assert code == 2 and "row sum" in err


def test_report_page_with_plot(tmp_path):
    path = write_scheme_page(C.get("rk4"), tmp_path)
    text = path.read_text()
    assert path.name == "rk4.md"
    assert r"\begin{array}" in text and "## Derivations" in text and "A-stable" in text
    png = tmp_path / "rk4-stability.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_report_page_for_partitioned_has_no_plot(tmp_path):
    path = write_scheme_page(C.get("stormer-verlet"), tmp_path)
    assert "symplectic" in path.read_text()
    assert not list(tmp_path.glob("*.png"))


def test_time_limit_main_thread():
    ok, val = run_with_time_limit(lambda: 42, 1.0)
    assert ok and val == 42
    t0 = time.monotonic()
    ok, val = run_with_time_limit(time.sleep, 0.2, 5)
    assert not ok and val is None and time.monotonic() - t0 < 2


def test_time_limit_nested_inner_expires_outer_survives():
    def outer():
        inner = run_with_time_limit(time.sleep, 0.1, 5)
        return inner

    ok, inner = run_with_time_limit(outer, 3.0)
    assert ok and inner == (False, None)


def test_time_limit_survives_code_that_swallows_the_alarm():
    """A library that catches the interrupt while it unwinds (an `except BaseException`, or a gc callback where Python
    prints "Exception ignored" and goes on) must not turn a time limit into a hang: the alarm fires again."""
    from verify.timelimit import TimeLimitExceeded

    swallowed = []

    def stubborn():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except TimeLimitExceeded:
                if not swallowed:  # swallow the first one only, as a gc callback would
                    swallowed.append(time.monotonic())
                    continue
                raise
        return "ran to the end"

    t0 = time.monotonic()
    ok, val = run_with_time_limit(stubborn, 0.2)
    took = time.monotonic() - t0
    assert swallowed, "the first alarm never reached the computation"
    assert not ok and val is None
    assert took < 0.2 + BACKSTOP + 1.0, took


def test_time_limit_after_a_stop_leaves_no_alarm_behind():
    ok, _ = run_with_time_limit(time.sleep, 0.1, 5)
    assert not ok
    time.sleep(BACKSTOP_WAIT)  # a stray backstop alarm would raise here, outside any limit
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_time_limit_in_worker_thread_uses_subprocess():
    results = {}

    def work():
        results["fast"] = run_with_time_limit(lambda: 7, 5.0)
        results["slow"] = run_with_time_limit(time.sleep, 0.3, 10)

    th = threading.Thread(target=work)
    th.start()
    th.join(20)
    assert results["fast"] == (True, 7)
    assert results["slow"] == (False, None)


def test_property_reports_undecided_on_timeout():
    f = order(C.get("gauss-legendre-4"), max_order=10, limit=1e-3)
    assert isinstance(f, Finding)
    assert f.status == "undecided" and f.holds is None and "time limit" in f.derivation


def test_cli_rejects_float_layer():
    code, _, err = _run(["scheme", "forward-euler", "--layer", "[[-0.5]]"])
    assert code == 2 and "W[0][0]" in err
    code, _, err = _run(["scheme", "forward-euler", "--layer", "[[1, 2]]"])
    assert code == 2 and "square" in err
