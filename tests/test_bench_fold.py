"""`verify bench --fold`: the slower benchmarks' saved sections replace their blocks in benchmarks.md, the hand-written
tables around them stay; and the `verify` script finds the benchmarks folder from any working directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.figures import splice


def test_a_section_replaces_the_block_under_its_heading_and_keeps_the_others() -> None:
    existing = "# B\n\nintro\n\n## Kept\n\nhand table\n\n## Opt\n\nold numbers\n\n## Tail\n\nkept too\n"
    out = splice(existing, "## Opt\n\nnew numbers\n\n### New sub\n\nappended\n")
    assert "new numbers" in out and "old numbers" not in out
    assert "hand table" in out and "kept too" in out
    assert out.index("## Opt") < out.index("## Tail") < out.index("### New sub")  # replaced in place, new one appended


def test_fold_without_a_benchmarks_file_names_it_and_the_fix(tmp_path: Path) -> None:
    verify_script = Path(sys.executable).with_name("verify")
    r = subprocess.run([str(verify_script), "bench", "--fold", "--out", str(tmp_path / "none")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "benchmarks.md" in r.stderr and "Fix:" in r.stderr and "Traceback" not in r.stderr
