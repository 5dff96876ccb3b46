"""index.html: self-contained, and rendered by headless Chromium with its tables and every image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from test_reports_fixtures import write_experiment
from wsolbench.reports.report import build_report

# Injected by the test into a copy of the page: once every <img> has decoded with a non-zero width it
# sets data-images-ready="N" on <body>, else data-images-failed lists the broken images' alt texts.
READY_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var failed = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  if (failed.length === 0) {
    document.body.setAttribute("data-images-ready", String(images.length));
  } else {
    document.body.setAttribute("data-images-failed",
      failed.map(function (img) { return img.alt; }).join(";"));
  }
});
</script>"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def with_ready_script(page: str) -> str:
    """The page with READY_SCRIPT as the last element of <body>."""
    assert page.count("</body>") == 1
    return page.replace("</body>", f"{READY_SCRIPT}\n</body>")


def _chromium() -> str:
    """The chromium binary; installed through apt when missing and possible, else the test skips."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    install = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True,
                             timeout=600)
    if install.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"`apt-get install -y chromium` failed: {install.stderr.strip()[-300:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(write_experiment(tmp_path_factory.mktemp("runs")), with_paper=True)


def test_page_is_self_contained(report) -> None:
    page = (report.out / "index.html").read_text()
    assert "<style>" in page and page.count("<table>") == 2
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(?!data:)', page)  # no external file or URL
    assert "<script" not in page
    assert "<b>80.96</b>" in page  # the published SAT row, best in its column


def test_chromium_renders_tables_and_every_image(report, tmp_path) -> None:
    chromium = _chromium()
    index = tmp_path / "index.html"  # the report's page, as it is, plus the test's image check
    index.write_text(with_ready_script((report.out / "index.html").read_text()))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", index.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ready="6"' in dom.stdout, dom.stdout[:500]
    assert "data-images-failed=\"" not in dom.stdout
    assert dom.stdout.count("<table>") == 2 and "SAT (1-shot)" in dom.stdout

    broken = tmp_path / "broken.html"  # the check can fail: one undecodable image is reported by name
    broken.write_text(index.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    dom = subprocess.run([chromium, *flags, "--dump-dom", broken.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'data-images-failed="boxacc_synthetic"' in dom.stdout and 'data-images-ready="' not in dom.stdout

    shot = tmp_path / "shot.png"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,900",
             f"--screenshot={shot}"]
    page = (report.out / "index.html").resolve()  # the report's own page this time
    run = subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1200)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text and table rules drawn, not blank
