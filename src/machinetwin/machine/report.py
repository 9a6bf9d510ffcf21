"""An HTML report of a simulation run: what a service engineer would rather look at.

Plots of axis positions, feed, spindle load/power/temperature, a vibration spectrum
(with the bearing defect frequencies marked) and the finished part, in one
self-contained HTML file (images embedded).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import butter, hilbert, sosfiltfilt  # noqa: E402

from .runfile import RunRecord  # noqa: E402


def figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_series(run: RunRecord, panels: list[tuple[str, list[str], str]]) -> str:
    t = run.columns["t"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.3 * len(panels)), sharex=True)
    for ax, (title, names, unit) in zip(np.atleast_1d(axes), panels, strict=True):
        for name in names:
            if name in run.columns:
                ax.plot(t, run.columns[name], lw=0.8, label=name)
        ax.set_ylabel(unit)
        ax.set_title(title, loc="left", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    return figure_png(fig)


def envelope_spectrum(values: np.ndarray, rate_hz: float, band=(2000.0, 6000.0)):
    """Envelope spectrum: band-pass around the bearing resonance, Hilbert envelope, FFT."""
    high = min(band[1], 0.45 * rate_hz)
    sos = butter(4, (band[0], high), btype="bandpass", fs=rate_hz, output="sos")
    envelope = np.abs(hilbert(sosfiltfilt(sos, values)))
    envelope -= envelope.mean()
    spectrum = np.abs(np.fft.rfft(envelope * np.hanning(len(envelope)))) / len(envelope)
    return np.fft.rfftfreq(len(envelope), 1.0 / rate_hz), spectrum


def plot_spectrum(run: RunRecord) -> str | None:
    if not run.waveforms:
        return None
    top = max(abs(w.rpm or 0.0) for w in run.waveforms)
    steady = [w for w in run.waveforms if abs(w.rpm or 0.0) >= 0.5 * top]
    w = steady[-1] if steady else run.waveforms[-1]
    values = w.values - w.values.mean()
    freqs = np.fft.rfftfreq(len(values), 1.0 / w.rate_hz)
    spectrum = np.abs(np.fft.rfft(values * np.hanning(len(values)))) / len(values)
    env_freqs, env = envelope_spectrum(values, w.rate_hz)
    fig, (raw, ax) = plt.subplots(2, 1, figsize=(11, 6))
    raw.semilogy(freqs, spectrum + 1e-12, lw=0.6)
    raw.set_xlabel("frequency (Hz)")
    raw.set_ylabel("m/s²")
    raw.set_title(
        f"spindle vibration spectrum, window at t = {w.t0:.0f} s, {abs(w.rpm or 0):.0f} rpm",
        loc="left",
        fontsize=10,
    )
    keep = env_freqs <= 500.0
    ax.plot(env_freqs[keep], env[keep], lw=0.8)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("m/s²")
    ax.set_title("envelope spectrum (2–6 kHz band) with bearing defect frequencies", loc="left",
                 fontsize=10)  # fmt: skip
    orders = run.meta.get("bearing_orders")
    if orders and w.rpm:
        shaft_hz = abs(w.rpm) / 60.0
        colours = {"bpfo": "tab:red", "bpfi": "tab:green", "bsf": "tab:purple"}
        for name, colour in colours.items():
            f = orders[name] * shaft_hz * (2 if name == "bsf" else 1)
            label = f"{'2×BSF' if name == 'bsf' else name.upper()} {f:.1f} Hz"
            ax.axvline(f, color=colour, ls="--", lw=0.8, label=label)
        ax.legend(loc="upper right", fontsize=8)
    for a in (raw, ax):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def plot_part(run: RunRecord) -> str | None:
    if run.stock_heights is None:
        return None
    h = run.stock_heights
    ox, oy, _ = run.stock_origin
    extent = (ox, ox + h.shape[0] * run.stock_grid, oy, oy + h.shape[1] * run.stock_grid)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    image = ax.imshow(h.T, origin="lower", extent=extent, cmap="viridis")
    fig.colorbar(image, ax=ax, label="top of material, work Z (mm)")
    ax.set_xlabel("X (mm)")
    ax.set_ylabel("Y (mm)")
    ax.set_title("finished part (height map)", loc="left", fontsize=10)
    return figure_png(fig)


def render_report(run: RunRecord, title: str) -> str:
    sections = [
        ("Axes", plot_series(run, [
            ("Axis positions (machine frame)", ["x.pos", "y.pos", "z.pos"], "mm"),
            ("Following error", ["x.ferr", "y.ferr", "z.ferr"], "mm"),
            ("Feed", ["feed", "feed_cmd"], "mm/min"),
        ])),
        ("Spindle", plot_series(run, [
            ("Spindle speed", ["spindle.speed", "spindle.speed_cmd"], "rpm"),
            ("Spindle load", ["spindle.load"], "%"),
            ("Power", ["spindle.power", "power"], "W"),
            ("Spindle temperature", ["spindle.temp"], "°C"),
            ("Tool wear", ["tool_wear"], "mm"),
        ])),
        ("Vibration", plot_spectrum(run)),
        ("Part", plot_part(run)),
    ]  # fmt: skip
    alarms = run.meta.get("alarms", [])
    rows = "".join(
        f"<tr><td>{a['raised_at']:.1f}</td><td>{html.escape(a['code'])}</td>"
        f"<td>{a['severity']}</td><td>{html.escape(a['source'])}</td>"
        f"<td>{html.escape(a['message'])}</td></tr>"
        for a in alarms
    )
    body = [f"<h1>{html.escape(title)}</h1>"]
    summary = {k: v for k, v in run.meta.items() if k != "alarms"}
    body.append("<table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()) + "</table>")  # fmt: skip
    body.append("<h2>Alarms</h2>" + (f"<table><tr><th>t (s)</th><th>code</th><th>severity</th>"
                f"<th>source</th><th>message</th></tr>{rows}</table>" if rows else "<p>none</p>"))  # fmt: skip
    for name, png in sections:
        if png:
            body.append(
                f'<h2>{name}</h2><img alt="{name} plots" src="data:image/png;base64,{png}">'
            )
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:100%}")  # fmt: skip
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")  # fmt: skip


def write_report(run: RunRecord, out: Path, title: str) -> None:
    out.write_text(render_report(run, title), encoding="utf-8")
