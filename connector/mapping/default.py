"""The default mapping (for schemas/user_behavior_event.avsc), read from the YAML file
shipped inside the package, and mapping files in general."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from connector.config_mapping import MappingSettings

DEFAULT_MAPPING_RESOURCE = "user_behavior_event.yaml"


def _mapping_section(text: str) -> MappingSettings:
    data: Any = yaml.safe_load(text)
    return MappingSettings.model_validate(data["mapping"])


def default_mapping() -> MappingSettings:
    """The mapping used when the config has no ``mapping:`` section."""
    text = resources.files(__package__).joinpath(DEFAULT_MAPPING_RESOURCE).read_text("utf-8")
    return _mapping_section(text)


def load_mapping_file(path: Path) -> MappingSettings:
    """A YAML file whose top level holds ``mapping:`` (as in config/mappings/)."""
    return _mapping_section(path.read_text(encoding="utf-8"))
