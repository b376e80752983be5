"""Build hook: ship celeryconfig.py and migrations/ in the wheel, but not in editable installs."""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    """Add the root-level files that the installed package needs."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Force-include them only for a standard wheel; editable ones see the checkout."""
        if version == "standard":
            build_data["force_include"]["celeryconfig.py"] = "celeryconfig.py"
            build_data["force_include"]["migrations"] = "inference_farm/_migrations"
