"""The `verify` command: list, check (exit status), report, scheme, help."""
import json
import os
import subprocess
import sys

import pytest

from verify.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("list", "check", "report", "train", "bench"):
        assert cmd in out


def test_list_shows_controls(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {a["name"]: a for a in data}
    assert names["g-sympnet"]["control"] is False and names["mlp-map"]["control"] is True


def test_check_exit_status_zero_only_when_every_claim_passes(capsys):
    assert main(["check", "la-sympnet", "--quiet", "--rollout-steps", "0", "--inputs", "256", "--examples", "30"]) == 0
    out = capsys.readouterr().out
    assert "proved" in out
    assert main(["check", "resnet-flow", "--quiet", "--rollout-steps", "0", "--inputs", "256", "--examples", "30"]) == 1
    assert "violated" in capsys.readouterr().out


def test_unknown_architecture_is_exit_2_with_a_fix(capsys):
    assert main(["check", "no-such-net"]) == 2
    assert "verify list" in capsys.readouterr().err


def test_report_writes_pages_and_index(tmp_path):
    code = main(["report", "g-sympnet", "affine-coupling", "--size", "quick", "--out", str(tmp_path), "--quiet",
                 "--rollout-steps", "1000", "--inputs", "256", "--examples", "30"])
    assert code == 0  # genuine claims proved, the control's false claim violated
    page = (tmp_path / "g-sympnet" / "README.md").read_text()
    assert "proved" in page and "Composition lemma" in page and "tolerance" in page
    assert (tmp_path / "g-sympnet" / "defects.png").stat().st_size > 1000
    assert (tmp_path / "g-sympnet" / "energy.png").stat().st_size > 1000
    assert (tmp_path / "g-sympnet" / "checkpoint" / "model.safetensors").is_file()
    data = json.loads((tmp_path / "affine-coupling" / "report.json").read_text())
    vp = next(c for c in data["claims"] if c["property"] == "VolumePreserving")
    assert vp["verdict"] == "violated" and vp["as_expected"] and vp["symbolic"]["kind"] == "refutation"
    assert main(["report", "affine-coupling", "--size", "quick", "--out", str(tmp_path), "--quiet", "--strict",
                 "--rollout-steps", "0", "--inputs", "256", "--examples", "30", "--reuse-checkpoints"]) == 1


def test_console_script_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "verify.cli", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "hnn-verlet" in proc.stdout


DYING_PLUGIN = '''
import os
import torch
from verify.declare.registry import architecture
from verify.properties import Invertible


class Dies(torch.nn.Module):
    """A model whose forward ends its own process (as a segfault in a library would)."""

    def __init__(self, **_):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        os._exit(3)

    def inverse(self, y):
        return y


architecture("dying-net", task="pendulum", claims=[Invertible()], description="forward calls os._exit")(Dies)
'''


def test_report_jobs_workers_survive_a_model_that_kills_its_process(tmp_path):
    """--jobs 2: architectures are checked in worker processes; one whose model ends its process is reported as such
    (exit 1, a message with the command to rerun it), and every other architecture still gets its report and index row."""
    (tmp_path / "dying_plugin.py").write_text(DYING_PLUGIN)
    out = tmp_path / "reports"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERIFY_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "verify.cli", "--plugin", "dying_plugin", "report", "dying-net",
                           "la-sympnet", "--jobs", "2", "--out", str(out), "--size", "quick", "--quiet", "--inputs", "64",
                           "--examples", "0", "--rollout-steps", "0"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "dying-net: error: the process checking it died" in proc.stderr and "verify report dying-net" in proc.stderr
    assert "1 architectures reported" in proc.stdout and "(2 worker processes)" in proc.stdout
    data = json.loads((out / "la-sympnet" / "report.json").read_text())
    assert data["passed_as_expected"] and {c["verdict"] for c in data["claims"]} <= {"proved", "holds"}
    index = json.loads((out / "index.json").read_text())
    assert [e["architecture"] for e in index] == ["la-sympnet"]
    assert not (out / "dying-net").exists()


def test_report_jobs_out_of_range_is_usage_error(capsys):
    assert main(["report", "la-sympnet", "--jobs", "0"]) == 2
    assert "--jobs=0" in capsys.readouterr().err
