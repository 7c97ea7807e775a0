"""The README's user example runs as written: every code block of "Register your own architecture", in order, in one
namespace (as a user pasting them into one file would), then the architecture it registered is removed again."""
import re
from pathlib import Path

from verify import unregister

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else len(text)]


def test_the_register_your_own_architecture_section_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", _section("Register your own architecture"), flags=re.S)
    assert len(blocks) >= 3, "the section should show the architecture, the check and a property"
    namespace: dict = {"__name__": "readme_example"}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"README.md block {i + 1}", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        unregister("my-cubic-kick")
    result = namespace["result"]
    assert result.result("Symplectic").verdict.value == "proved"
    assert result.result("VolumePreserving").verdict.value == "proved"
    assert namespace["odd"].result("OddMap").numeric.verdict.value == "holds"
