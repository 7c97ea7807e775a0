"""Nothing lost, nothing hung: interrupted and concurrent reports, bad options and environment, hostile scheme
files, half precision, NaN models, plugins that do not import (issue 9)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from verify.cli import main
from verify.files import atomic_write_text, folder_lock, recover, staged_folder

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["la-sympnet", "--size", "quick", "--quiet", "--inputs", "64", "--examples", "0", "--rollout-steps", "0",
         "--symbolic-timeout", "10"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFY_THREADS="1", MPLBACKEND="Agg")
    env.pop("VERIFY_TEST_HOOK", None)
    env.pop("VERIFY_PLUGINS", None)
    env.update(extra)
    return env


def _verify(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verify.cli", *args], cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every visible file under folder (hidden entries are locks and work in progress)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """One good report, written by `verify report` with no --out: it lands in ./reports of the working folder."""
    cwd = tmp_path_factory.mktemp("work")
    proc = _verify(["report", *QUICK], cwd)
    assert proc.returncode == 0, proc.stderr
    reports = cwd / "reports"
    assert (reports / "la-sympnet" / "checkpoint" / "model.safetensors").is_file()
    assert json.loads((reports / "index.json").read_text())[0]["architecture"] == "la-sympnet"
    return reports


def _wait_for_pause(proc: subprocess.Popen, point: str) -> bool:
    for line in proc.stderr:
        if f"paused at {point}" in line:
            return True
    return False


def _copy(baseline: Path, tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    shutil.copytree(baseline, out)
    return out


# -- interrupts ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint-tensors-written", "before-replace:report.json",
                                   "before-replace:defects.png", "before-swap:la-sympnet"])
def test_a_report_killed_before_it_commits_leaves_every_previous_file_byte_identical(baseline, tmp_path, point):
    out = _copy(baseline, tmp_path)
    before = _snapshot(out)
    proc = _verify(["report", *QUICK, "--seed", "1", "--out", str(out)], tmp_path, VERIFY_TEST_HOOK=f"kill@{point}")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _snapshot(out) == before
    if point != "checkpoint-tensors-written":
        return
    # the case: the next run tidies what the killed one left and reuses the intact checkpoint, so no error
    # replaces the good report
    proc = _verify(["report", *QUICK, "--out", str(out), "--reuse-checkpoints"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".verify.lock"]
    data = json.loads((out / "la-sympnet" / "report.json").read_text())
    assert data["passed_as_expected"] and not data["errors"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-swap:la-sympnet", "before-replace:index.json"])
def test_a_report_killed_after_the_swap_leaves_a_complete_new_folder_and_the_old_index(baseline, tmp_path, point):
    from verify.train.training import load_checkpoint

    out = _copy(baseline, tmp_path)
    before = _snapshot(out)
    proc = _verify(["report", *QUICK, "--seed", "1", "--out", str(out)], tmp_path, VERIFY_TEST_HOOK=f"kill@{point}")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    after = _snapshot(out)
    assert after["index.json"] == before["index.json"] and after["README.md"] == before["README.md"]
    # the architecture's folder is the new one, whole: tensors, record and report belong together
    assert after["la-sympnet/checkpoint/model.safetensors"] != before["la-sympnet/checkpoint/model.safetensors"]
    trained = load_checkpoint(out / "la-sympnet" / "checkpoint", "la-sympnet")  # sha256 of the tensors matches
    assert trained.seed == 1
    assert json.loads((out / "la-sympnet" / "report.json").read_text())["environment"]["seed"] == 1


@pytest.mark.slow
def test_ctrl_c_removes_the_work_in_progress_and_keeps_the_previous_files(baseline, tmp_path):
    out = _copy(baseline, tmp_path)
    before = _snapshot(out)
    release = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-m", "verify.cli", "report", *QUICK, "--seed", "1", "--out", str(out)],
                            cwd=tmp_path, env=_env(VERIFY_TEST_HOOK="pause@before-swap:la-sympnet",
                                                   VERIFY_TEST_HOOK_RELEASE=str(release)),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            # a child inherits an ignored SIGINT (Python then installs no KeyboardInterrupt handler):
                            # whatever this test process's SIGINT disposition is, the command gets the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert _wait_for_pause(proc, "before-swap:la-sympnet")
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the report did not stop within 120 s of SIGINT (this process's SIGINT handler: "
                        f"{signal.getsignal(signal.SIGINT)!r}); its stderr:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    assert _snapshot(out) == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".verify.lock"]


def test_fallback_swap_killed_between_its_two_renames_is_restored(tmp_path):
    """Where renameat2 cannot exchange, the swap is two renames; a kill between them leaves the old folder aside,
    and recover() (run by the next report under the lock) puts it back."""
    target = tmp_path / "arch"
    target.mkdir()
    (target / "report.json").write_text("old")
    script = ("import verify.files as f\n"
              "f._exchange = lambda a, b: False\n"
              f"with f.staged_folder({str(target)!r}) as s:\n"
              "    (s / 'report.json').write_text('new')\n")
    proc = subprocess.run([sys.executable, "-c", script], env=_env(VERIFY_TEST_HOOK="kill@between-renames:arch"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not target.exists()
    assert any(recover(tmp_path))
    assert (target / "report.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["arch"]


def test_atomic_write_and_staged_folder_leave_the_old_content_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "index.json"
    f.write_text("old")
    import verify.files as files

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(f, "new")
    monkeypatch.undo()
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.json"]
    d = tmp_path / "arch"
    d.mkdir()
    (d / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(d) as s:
            (s / "a").write_text("new")
            raise RuntimeError("the check failed half-way")
    assert (d / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["arch", "index.json"]
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # the two-rename fallback, uninterrupted
    with staged_folder(d) as s:
        (s / "a").write_text("new")
    assert (d / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["arch", "index.json"]


# -- concurrency --------------------------------------------------------------------------------------------------

def test_a_second_writer_into_the_same_folder_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "reports"
    with folder_lock(out, "test holder"):
        assert main(["report", *QUICK, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "test holder" in err and "--out" in err and len(err.strip().splitlines()) == 1
        assert main(["train", "la-sympnet", "--size", "quick", "--out", str(out), "--quiet"]) == 2
    assert sorted(p.name for p in out.iterdir()) == [".verify.lock"]


@pytest.mark.slow
def test_two_concurrent_report_processes_one_runs_the_other_is_refused(tmp_path):
    out = tmp_path / "reports"
    release = tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-m", "verify.cli", "report", *QUICK, "--out", str(out)], cwd=tmp_path,
                             env=_env(VERIFY_TEST_HOOK="pause@report-locked", VERIFY_TEST_HOOK_RELEASE=str(release)),
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_for_pause(first, "report-locked")
        second = _verify(["report", *QUICK, "--seed", "1", "--out", str(out)], tmp_path)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr
        release.touch()
        first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0
    assert json.loads((out / "la-sympnet" / "report.json").read_text())["environment"]["seed"] == 0  # one seed only


# -- bad options and environment: exit 2, one line, nothing written ----------------------------------------------------

@pytest.mark.parametrize("args, name", [
    (["report", "--size", "ful"], "--size='ful'"),
    (["report", "la-sympnet", "--inputs", "0"], "--inputs=0"),
    (["report", "la-sympnet", "--seed", "-1"], "--seed=-1"),
    (["report", "la-sympnet", "--device", "tpu"], "--device='tpu'"),
    (["report", "la-sympnet", "--device", "cuda:99"], "--device='cuda:99'"),
    (["report", "la-sympnet", "--examples", "-1"], "--examples=-1"),
    (["report", "la-sympnet", "--symbolic-timeout", "nan"], "--symbolic-timeout=nan"),
    (["report", "la-sympnet", "--rollout-steps", "-5"], "--rollout-steps=-5"),
    (["report", "no-such-net"], "architecture='no-such-net'"),
    (["check", "la-sympnet", "--checkpoint", "nowhere"], "--checkpoint='nowhere'"),
    (["check", "la-sympnet", "--size", "ful"], "--size='ful'"),
    (["train", "la-sympnet", "--seed", "-1"], "--seed=-1"),
])
def test_bad_options_are_usage_errors_that_write_nothing(tmp_path, capsys, args, name):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if args[0] in ("report", "train") else []
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "expected" in err and "Fix:" in err
    assert not out.exists()


def test_unparsable_option_is_one_line_with_exit_2(tmp_path):
    proc = _verify(["report", "la-sympnet", "--inputs", "abc", "--out", str(tmp_path / "out")], tmp_path, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--inputs" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_bad_verify_threads_is_one_line_for_every_command(tmp_path, value):
    proc = _verify(["list"], tmp_path, timeout=120, VERIFY_THREADS=value)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and f"VERIFY_THREADS={value!r}" in proc.stderr


def test_a_plugin_that_does_not_import_is_one_line_and_the_others_still_run(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("def oops(:\n")
    proc = _verify(["--plugin", "no_such_plugin_mod", "list"], tmp_path, timeout=120)
    assert proc.returncode == 0 and "la-sympnet" in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "'no_such_plugin_mod'" in proc.stderr
    env = {"VERIFY_PLUGINS": "broken_plugin", "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    proc = _verify(["check", "la-sympnet", "--symbolic-only", "--quiet"], tmp_path, timeout=300, **env)
    assert proc.returncode == 0 and "proved" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'broken_plugin'" in lines[0] and "SyntaxError" in lines[0]


# -- the index: merged, never rebuilt from fewer ----------------------------------------------------------------

def _fake_report(root: Path, name: str, verdict: str = "proved") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "report.json").write_text(json.dumps({
        "architecture": name, "control": False, "passed_as_expected": verdict == "proved", "errors": [],
        "claims": [{"property": "Symplectic", "claimed_true": True, "verdict": verdict, "as_expected": verdict == "proved",
                    "symbolic": {"verdict": verdict}, "numeric": {"kind": "measurement", "max_defect": 1e-7,
                                                                   "tolerance": 1e-5, "verdict": "holds"}}],
        "rollout": None}))


def test_the_index_is_merged_with_what_the_folder_already_holds(tmp_path):
    from verify.report.pages import write_index

    _fake_report(tmp_path, "net-a")
    _fake_report(tmp_path, "net-b", "violated")
    (tmp_path / "index.json").write_text(json.dumps([{"architecture": "net-gone", "passed_as_expected": True,
                                                      "claims": {"Symplectic": "proved"}}]))
    write_index([], tmp_path, order=["net-b", "net-a"])
    index = json.loads((tmp_path / "index.json").read_text())
    assert [e["architecture"] for e in index] == ["net-b", "net-a", "net-gone"]
    assert index[2]["report"] == "missing" and index[0]["claims"] == {"Symplectic": "violated"}
    page = (tmp_path / "README.md").read_text()
    assert "[net-a](net-a/README.md)" in page and "net-gone" in page and "1e-07 / 1e-05" in page
    (tmp_path / "index.json").write_text("{truncated")  # a broken index is rebuilt from the reports on disk
    write_index([], tmp_path)
    assert {e["architecture"] for e in json.loads((tmp_path / "index.json").read_text())} == {"net-a", "net-b"}


def test_reproduce_lines_are_relative_and_name_the_plugin(tmp_path, monkeypatch):
    from verify.checking.api import ArchitectureResult
    from verify.declare.registry import Architecture, Size
    from verify.report.pages import reproduce

    Net = type("Net", (torch.nn.Module,), {"__module__": "my_package.layers"})
    arch = Architecture(name="my-net", factory=Net, claims=(), task="pendulum", sizes={"quick": Size()})
    result = ArchitectureResult(name="my-net", size="quick", results=[], architecture=arch, environment={"seed": 3},
                                options={"seed": 3, "n_inputs": 256, "max_examples": 5, "time_limit": 20.0,
                                         "rollout_steps": 0, "symbolic": True, "numeric": True, "device": None})
    monkeypatch.chdir(tmp_path)
    lines = reproduce(result, tmp_path / "reports", "checkpoint")
    assert lines["check"] == ("verify --plugin my_package.layers check my-net --checkpoint checkpoint --size quick "
                              "--seed 3 --inputs 256 --examples 5 --symbolic-timeout 20 --rollout-steps 0")
    assert lines["report"].startswith("verify --plugin my_package.layers report my-net --out reports --size quick")
    assert str(tmp_path) not in json.dumps(lines)


# -- hostile scheme files: exit 2 in one line, fast, in bounded memory ------------------------------------------------

def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _scheme(path: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "verify.cli", "scheme", "--file", str(path), *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory)
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("case", ["tower", "xor-tower", "big-power", "long-integer", "json-integer", "deep-nesting",
                                  "deep-json", "nan", "utf16", "binary", "too-large", "too-many-stages", "code"])
def test_hostile_scheme_input_is_refused_fast_with_exit_2(tmp_path, case):
    p = tmp_path / "t.json"

    def tableau(a: object) -> str:
        return json.dumps({"A": [[a]], "b": ["1"]})

    contents = {
        "tower": tableau("10**10**10"),
        "xor-tower": tableau("2^2^2^2^2^2"),
        "big-power": tableau("(10**100)**1000"),
        "long-integer": tableau("9" * 3000),
        "json-integer": '{"A": [[' + "9" * 5000 + ']], "b": ["1"]}',
        "deep-nesting": tableau("-" * 1500 + "1"),
        "deep-json": "[" * 200_000,
        "nan": '{"A": [[NaN]], "b": ["1"]}',
        "utf16": tableau("1/2").encode("utf-16"),
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00",
        "too-large": " " * (2 << 20) + tableau("1/2"),
        "too-many-stages": json.dumps({"A": [["0"] * 65] * 65, "b": ["0"] * 65}),
        "code": tableau("__import__('os').system('true')"),
    }[case]
    (p.write_bytes if isinstance(contents, bytes) else p.write_text)(contents)
    proc, seconds = _scheme(p)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("verify scheme: error:")
    assert seconds < 30


def test_six_distinct_square_roots_end_undecided_within_the_time_limit(tmp_path):
    roots = ["sqrt(2)", "sqrt(3)", "sqrt(5)", "sqrt(7)", "sqrt(11)", "sqrt(13)"]
    A = [["0"] * 6 for _ in range(6)]
    for i in range(1, 6):
        A[i][i - 1] = roots[i]
    p = tmp_path / "six.json"
    p.write_text(json.dumps({"A": A, "b": [f"{r}/6" for r in roots], "c": ["0"] + roots[1:]}))
    proc, seconds = _scheme(p, "--time-limit", "2", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "undecided" in proc.stdout and "number field" in proc.stdout
    assert seconds < 45  # one limit for the field, the others refused at once; never a hang


def test_building_a_tableau_does_not_build_its_number_field():
    from verify.schemes.exact import SchemeError
    from verify.schemes.tableau import ButcherTableau

    roots = ["sqrt(2)", "sqrt(3)", "sqrt(5)", "sqrt(7)", "sqrt(11)", "sqrt(13)"]
    A = [["0"] * 6 for _ in range(6)]
    for i in range(1, 6):
        A[i][0] = roots[i]
    t0 = time.perf_counter()
    ButcherTableau(A, ["1/6"] * 6, ["0"] + roots[1:])  # c given and right: checked without the degree-64 field
    assert time.perf_counter() - t0 < 5
    with pytest.raises(SchemeError, match="row sum"):
        ButcherTableau(A, ["1/6"] * 6, ["0"] + roots[1:4] + ["sqrt(17)", roots[5]])


# -- models the numeric stage must still give a verdict for ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_models_get_a_verdict_with_their_own_tolerance(dtype):
    from verify.checking.api import check
    from verify.properties import Symplectic, VolumePreserving
    from verify.train.training import train

    model = train("g-sympnet", "quick", seed=0).model.to(dtype)
    result = check(model, claims=[Symplectic(), VolumePreserving()], dim=2, n_inputs=256, max_examples=5,
                   rollout_steps=0)
    name = str(dtype).replace("torch.", "")
    for r in result.results:
        assert r.verdict.value in ("proved", "holds"), r.numeric.summary
        m = r.numeric
        assert m.dtype == name and "linear algebra in float32" in m.tolerance_formula and f"{name}'s" in m.tolerance_formula
        assert f"{torch.finfo(dtype).eps:.3g}" in m.tolerance_formula  # the tolerance is the model dtype's, stated
        assert m.tolerance > 100 * torch.finfo(torch.float32).eps


def test_equivariance_of_a_model_that_overflows_to_nan_is_an_error_verdict():
    from verify.checking.api import check
    from verify.declare.actions import SetAction
    from verify.declare.groups import SymmetricGroup
    from verify.properties.equivariant import Equivariant, measure_equivariance

    class Overflows(torch.nn.Module):  # inf/inf = NaN in float32 everywhere, exact in float64
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1e30]))

        def forward(self, x):
            return x * self.w * self.w / self.w / self.w

    S = SymmetricGroup(4)
    prop = Equivariant(S, SetAction(S), SetAction(S))
    ev = measure_equivariance(prop, Overflows().eval(), reinit=False)
    assert ev.verdict.value == "error" and "non-finite" in ev.summary
    result = check(Overflows().eval(), claims=[prop], rollout_steps=0)
    assert result.results[0].verdict.value == "error" and "non-finite" in result.results[0].numeric.summary
