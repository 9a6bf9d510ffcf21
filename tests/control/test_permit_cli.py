"""``machinetwin edge permit``: the person at the machine grants and revokes remote operation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from machinetwin.cli import app
from machinetwin.edge.permit import PermitStore

runner = CliRunner()
SITE = """site = "harbin"
[[machines]]
id = "harbin-vmc-1"
programs = ["part.ngc"]
[control]
hub_public_key = "{key}"
permit_file = "state/permits.sqlite"
"""


def site_file(tmp_path: Path) -> Path:
    import base64

    (tmp_path / "part.ngc").write_text("G0 X0\nM2\n")
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(key=base64.b64encode(bytes(32)).decode()))
    return path


def test_grant_then_revoke_through_the_site_file(tmp_path: Path) -> None:
    site = site_file(tmp_path)
    granted = runner.invoke(
        app, ["edge", "--config", str(site), "permit", "harbin-vmc-1", "--minutes", "15"]
    )
    assert granted.exit_code == 0, granted.output
    permits = PermitStore(tmp_path / "state" / "permits.sqlite")
    permit = permits.active("harbin-vmc-1")
    assert permit is not None and 14.9 * 60 < permit.expires_at - permit.granted_at <= 15 * 60
    assert permits.active("tianjin-vmc-1") is None
    # only the local user may write the file: nobody else, not even the group
    assert stat.S_IMODE(os.stat(permits.path).st_mode) == 0o600
    revoked = runner.invoke(
        app, ["edge", "--config", str(site), "permit", "harbin-vmc-1", "--revoke"]
    )
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert permits.active("harbin-vmc-1") is None


def test_bad_invocations_say_what_is_wrong(tmp_path: Path) -> None:
    file = str(tmp_path / "p.sqlite")
    neither = runner.invoke(app, ["edge", "permit", "m1", "--file", file])
    assert neither.exit_code != 0 and "--minutes" in neither.output
    too_long = runner.invoke(app, ["edge", "permit", "m1", "--minutes", "100000", "--file", file])
    assert too_long.exit_code == 1 and "minutes" in too_long.output
    bad_id = runner.invoke(app, ["edge", "permit", "m/1", "--minutes", "5", "--file", file])
    assert bad_id.exit_code != 0 and "machine id" in bad_id.output
    assert PermitStore(file).active("m1") is None
