"""The `verify` command: list, check (exit status), report, scheme, help."""
import json
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
