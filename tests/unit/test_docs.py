"""The README and CI agree with the code: the test command, and every setting documented."""

from __future__ import annotations

import re
from pathlib import Path

from inference_farm.settings import Settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.DOTALL)


def test_readme_has_the_two_one_line_commands() -> None:
    blocks = _bash_blocks()
    assert len(blocks) >= 2
    run, test = blocks[0], blocks[1]
    assert "\n" not in run and run.endswith("inference-farm up")
    assert "\n" not in test and test.endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _bash_blocks()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines


def test_every_setting_is_in_the_readme_table() -> None:
    for name in Settings.model_fields:
        assert f"| `INFERENCE_FARM_{name.upper()}` | `{name}` |" in README, name


def test_the_layout_section_lists_every_folder_and_module() -> None:
    layout = README[README.index("## Layout") :]
    layout = layout[: layout.index("```\n", layout.index("```") + 3)]
    package = ROOT / "inference_farm"
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name in ("__init__.py", "__main__.py") or "routes" in relative.parts:
            continue
        if not re.search(rf"^\s+{re.escape(path.name)}\s", layout, flags=re.MULTILINE):
            missing.append(str(relative))
    for folder in sorted(p for p in package.iterdir() if (p / "__init__.py").is_file()):
        if f"  {folder.name}/ " not in layout:
            missing.append(f"{folder.name}/")
    routes = [p.stem for p in (package / "api" / "routes").glob("*.py") if p.stem != "__init__"]
    missing += [f"routes/{name}" for name in routes if name not in layout]
    assert missing == []
