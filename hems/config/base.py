"""The base of every configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A TOML table: unknown keys are errors, and a loaded configuration never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
