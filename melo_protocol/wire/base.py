"""Base classes for wire models: requests reject unknown fields, responses tolerate them."""

from pydantic import BaseModel, ConfigDict


class Request(BaseModel):
    """A body a client sends: strict about unknown fields so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Response(BaseModel):
    """A body the server sends: clients ignore fields they do not know (forward compatible)."""

    model_config = ConfigDict(extra="ignore")
