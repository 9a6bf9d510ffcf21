"""The lab's web UI (NiceGUI, served by the hub): fleet, machine twin, history, alarms.

``mount_ui(app, UiContext(store, live, users, machine_config), secret, storage_dir)``
adds the pages to the hub's FastAPI app; :mod:`.twin` holds the computations behind
the machine page (toolpath, stock, spectrum) as plain functions, :mod:`.sim_twin` the
simulated twin (the virtual machine running the machine's program) and its comparison
with what the machine reports, :mod:`.twin_tracker` keeps one twin per machine up to
date for every page, and :mod:`.chart_feed` sends the live charts as deltas.
"""

from .context import UiContext

__all__ = ["UiContext", "mount_ui"]


def mount_ui(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see app.mount_ui
    """Import NiceGUI only when a hub serves the UI (see :func:`.app.mount_ui`)."""
    from .app import mount_ui as mount

    return mount(*args, **kwargs)
