"""Scenario: the luigid visualizer in headless Chromium at 1,400 px shows the progress bars.

Group tasks once were named by 20 comma-joined keys (360 characters), which pushed the
Workers tab's progress column off the page. Chromium comes from Debian (.ci/run installs
it); the test skips only where it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_study
from dasher_server import DasherServer
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BAR = (51, 122, 183)  # the visualizer's (Bootstrap's) progress-bar blue
WIDTH = 1400


def screenshot(url: str, path: Path, profile: Path) -> Image.Image:
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},1000",
            "--virtual-time-budget=8000",  # let the page's scripts fetch and draw the task list
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(path).convert("RGB")


def is_blue(pixel: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(pixel, BAR, strict=True))


def blue_pixels(image: Image.Image) -> int:
    """Pixels of the page's primary blue: progress bars and the task list's action buttons."""
    return sum(1 for pixel in image.getdata() if is_blue(pixel))


def widest_bar(image: Image.Image) -> int:
    """The longest horizontal run of that blue: a progress bar is wider than any button (22 px)."""
    width, height = image.size
    pixels = image.load()
    best = 0
    for y in range(height):
        run = 0
        for x in range(width):
            run = run + 1 if is_blue(pixels[x, y]) else 0
            best = max(best, run)
    return best


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_workers_tab_and_task_list_show_progress_bars_at_1400_px(pipe, luigid, tmp_path):
    for n in range(1, 41):
        pipe.add(make_study(n), files=1, nested=False)
    pipe.settings["sendit.group_size"] = "20"
    with DasherServer() as server:
        pipe.settings.update(
            {
                "identifiers.backend": "dasher",
                "dasher.base_url": server.base,
                "dasher.secrets_file": str(server.write_secrets(tmp_path / "secrets.json")),
            }
        )
        server.hold()  # a group of 20 batches stays RUNNING in stage 2 while the page is drawn
        run = pipe.start(workers=1, scheduler_port=luigid.port)
        try:
            assert server.arrived.wait(120)
            workers = screenshot(f"{luigid.url}/static/visualiser/index.html#tab=workers", tmp_path / "w.png", tmp_path)
        finally:
            server.release()
        assert run.wait(300) == 0
    tasks = screenshot(f"{luigid.url}/static/visualiser/index.html", tmp_path / "t.png", tmp_path)
    assert workers.width == WIDTH and widest_bar(workers) >= 30, "no progress bar on the Workers tab at 1,400 px"
    assert blue_pixels(tasks) > 50, "the task list's action buttons are not on the page at 1,400 px"
