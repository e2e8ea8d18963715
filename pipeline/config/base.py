"""What every section of ``params.yaml`` shares: unknown keys refused, strict types, frozen values."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class Section(BaseModel):
    """A section of params.yaml: unknown keys refused, values frozen once parsed."""

    # strict: YAML already gives typed values, so "0.1" (a string) or 1 for a bool is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_choice(key: str, value: object, choices: Any, error: type[Exception] = ValueError) -> None:
    """Refuse ``value`` unless the ``Literal`` type ``choices`` admits it.

    For code that meets a knob's value without the schema having seen it (a fitted step used as a library, a
    network spec read back from a model bundle), with the allowed values taken from the type that declares them.

    Raises:
        ``error``: "``key``: expected one of (...), got ``value``".
    """
    allowed = get_args(choices)
    if value not in allowed:
        raise error(f"{key}: expected one of {allowed}, got {value!r}")
