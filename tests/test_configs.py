"""Bad configuration files give an error naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from machinetwin.edge.agent import load_edge_config
from machinetwin.errors import ConfigError
from machinetwin.hub.service import load_hub_config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('site = "Harbin"\n', r"site.toml: machines: Field required"),
        ('site = "Harbin"\n[[machines]]\nid = "bad id!"\nprograms = ["p.ngc"]\n',
         r"machines.0.id: String should match pattern"),
        ('site = "Harbin"\n[broker]\nport = 70000\n[[machines]]\nid = "m1"\nprograms = ["p.ngc"]\n',
         r"broker.port: Input should be less than 65536"),
        ('site = "Harbin"\n[[machines]]\nid = "m1"\nprograms = ["missing.ngc"]\n',
         r"machines.m1.programs: no such file .*missing.ngc"),
        ('site = "Harbin"\nspeed = 3\n[[machines]]\nid = "m1"\nprograms = ["p.ngc"]\n',
         r"speed: Extra inputs are not permitted"),
        ('site = "Harbin\n', r"site.toml: .*"),
    ],
)  # fmt: skip
def test_edge_config_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.ngc").write_text("M2\n")
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_edge_config(path)


def test_edge_config_resolves_programs_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "p.ngc").write_text("M2\n")
    path = tmp_path / "site.toml"
    path.write_text('site = "Harbin"\n[[machines]]\nid = "m1"\nprograms = ["p.ngc"]\n')
    config = load_edge_config(path)
    assert config.machines[0].programs == [tmp_path / "p.ngc"]
    assert config.broker.port == 1883


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_port = -1\n", r"hub.toml: api_port: Input should be greater than or equal to 0"),
        ("[broker]\nhost = 3\n", r"broker.host: Input should be a valid string"),
        ("retention_days = 0\n", r"retention_days: Input should be greater than 0"),
        ("colour = 'red'\n", r"colour: Extra inputs are not permitted"),
    ],
)
def test_hub_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_hub_config(path)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing.toml: cannot read"):
        load_hub_config(tmp_path / "nothing.toml")
    with pytest.raises(ConfigError, match="nothing.toml: cannot read"):
        load_edge_config(tmp_path / "nothing.toml")
