"""What every section of ``params.yaml`` shares: unknown keys refused, strict types, frozen values."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class Section(BaseModel):
    """A section of params.yaml: unknown keys refused, values frozen once parsed."""

    # strict: YAML already gives typed values, so "0.1" (a string) or 1 for a bool is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
