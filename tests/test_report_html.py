"""report.html of the smoke reproduction rendered in headless Chromium: a screenshot that is not
blank, and a DOM with every section and one claims-table row per claim."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from _reproduce_smoke import smoke_reproduction
from cooldown.report.html import SECTION_IDS


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, data_cache):
    return smoke_reproduction(tmp_path_factory, data_cache)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: run `bash scripts/setup.sh --test` (it installs it)"
        )
    return path


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


def test_report_renders_non_blank(smoke, tmp_path):
    from matplotlib.image import imread

    result, _ = smoke
    png = tmp_path / "report.png"
    _run(
        tmp_path,
        f"--screenshot={png}",
        "--window-size=1280,4000",
        (result.out / "report.html").absolute().as_uri(),
    )
    pixels = imread(png)
    assert pixels.shape[:2] == (4000, 1280)
    assert float(np.var(pixels[..., :3])) > 1e-3


def test_report_dom_has_every_section_and_claim(smoke, tmp_path):
    result, _ = smoke
    dom = _run(tmp_path, "--dump-dom", (result.out / "report.html").absolute().as_uri()).stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    claims = json.loads((result.out / "claims.json").read_text())["claims"]
    assert dom.count('<tr class="claim ') == len(claims) == 20
    for c in claims:
        assert c["verdict"] in dom
