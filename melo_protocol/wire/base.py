"""Base classes for wire models: requests reject unknown fields, responses tolerate them."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


class Request(BaseModel):
    """A body a client sends: strict about unknown fields so typos fail loudly.

    NUL characters are refused anywhere inside: no legitimate text carries them, and PostgreSQL
    cannot store them in text columns.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("NUL characters are not allowed")
        return data


class Response(BaseModel):
    """A body the server sends: clients ignore fields they do not know (forward compatible)."""

    model_config = ConfigDict(extra="ignore")
