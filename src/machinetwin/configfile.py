"""Loading a TOML file into a typed (pydantic) configuration, with errors that say where.

Every configuration file of machinetwin (machine, site, hub) goes through here, so a
mistake always reads the same way: ``FILE: key.path: problem``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def parse_toml(text: str, model: type[Model], name: str) -> Model:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{name}: {problems}") from None


def load_toml(path: str | Path, model: type[Model]) -> Model:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_toml(text, model, str(path))
