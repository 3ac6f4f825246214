"""Headless Chromium for the run-report tests: load a page with the network off, take a
screenshot, dump the DOM and collect the console's messages, in one browser run.

The network is off by running Chromium in a new, empty network namespace
(`unshare -n`, as root: what CI and this machine are); where that is not
allowed, host resolution is mapped to nothing instead. Console messages
(uncaught errors, console.* calls, and Content-Security-Policy violations,
which is what loading anything from outside a self-contained page gives) are
read from Chromium's own log on stderr (`--enable-logging=stderr`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?:?\d*\] (.*)")
# Chromium's own pages log too ('"Slow network is detected. ... Fallback font ...",
# source: chrome://resources/cr_components/composebox/composebox_input.js (574)', seen on
# a loaded machine): those are the browser's, not the page's.
_BROWSER_SOURCE = re.compile(r", source: chrome(?:-untrusted)?://\S+ \(\d+\)$")


def find_chromium() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _network_off() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@dataclass
class PageLoad:
    dom: str
    screenshot: Path
    console: list[str]  # every console message of the page
    network_namespace: bool


def load_page(html: Path, workdir: Path, width: int = 1200, height: int = 6000) -> PageLoad:
    browser = find_chromium()
    assert browser is not None
    prefix = _network_off()
    shot = workdir / "screenshot.png"
    cmd = [*prefix, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--disable-background-networking",
           f"--user-data-dir={workdir / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--window-size={width},{height}", f"--screenshot={shot}", "--dump-dom"]
    if not prefix:
        cmd += ["--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND"]
    result = subprocess.run([*cmd, html.resolve().as_uri()], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [m.group(1) for m in map(_CONSOLE.search, result.stderr.splitlines())
               if m and not _BROWSER_SOURCE.search(m.group(1))]
    return PageLoad(result.stdout, shot, console, bool(prefix))
