"""report.html: self-contained (figures inline, nothing fetched), and its tables really sort and
filter in a real browser (headless Chromium; skipped with the reason where it is not installed:
`make browser-check` installs it and runs this file; CI runs that target)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kit.report import html as report_html
from kit.report.markdown import build_report

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-intel-xeon-2core"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not (REFERENCE / "verdicts.json").is_file():
        pytest.skip(f"no committed reference run at {REFERENCE}")
    out = tmp_path_factory.mktemp("html") / "report"
    return build_report(REFERENCE, out, REFERENCE / "verdicts.json", REFERENCE / "findings.json")


def test_html_is_self_contained(built: Any) -> None:
    text = built.html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|img|iframe|link)[^>]+(src|href)=[\"']?(https?:)?//", text), "fetches from a network"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"<script[^>]+src=", text), "external script"
    srcs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", text)
    drawn = [f for f in built.figures if f.file]
    assert len(srcs) == len(drawn) and all(s.startswith("data:image/png;base64,") for s in srcs)
    for table in ("claims", "cells", "findings"):
        assert f'id="{table}"' in text
    verdicts = json.loads((REFERENCE / "verdicts.json").read_text())["verdicts"]
    body = text[text.index('id="claims"') : text.index('id="cells"')]
    assert body.count("<tr data-verdict=") == len(verdicts)  # every verdict is in the page


def _chromium(url: str, extra: list[str], timeout: int = 120) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    return run.stdout


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("QKIT_BROWSER_SHOTS"),
    reason="chromium is not installed (`make browser-check` installs it and runs this test)",
)
def test_tables_sort_and_filter_in_a_real_browser(built: Any, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "make browser-check: chromium is required here, not skipped"
    url = built.html.resolve().as_uri()
    dom = _chromium(url + "?selftest", ["--virtual-time-budget=10000", "--dump-dom"])
    m = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert m and m.group(1).strip(), dom[-2000:]
    seen = json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert seen.get("done"), seen.get("error")
    verdicts = json.loads((REFERENCE / "verdicts.json").read_text())["verdicts"]
    ids = [v["claim_id"] for v in verdicts]
    assert seen["claims_sorted_by_claim"] == sorted(ids, key=str.lower)  # a header click sorts ...
    assert seen["claims_sorted_by_claim_desc"] == sorted(ids, key=str.lower, reverse=True)  # ... a second reverses
    fails = {v["claim_id"] for v in verdicts if v["verdict"] == "fail"}
    assert set(seen["claims_fail"]) == fails and len(seen["claims_fail"]) == len(fails)  # the verdict filter
    assert seen["claims_fail_count_text"] == f"{len(fails)} of {len(ids)} rows"
    rows = report_html.claim_rows(verdicts, {})
    with_text = {r["claim"] for r in rows if any("dinov2" in str(x).lower() for x in r.values())}
    assert seen["claims_text_dinov2"] and set(seen["claims_text_dinov2"]) <= with_text  # the text filter
    p50 = [float(x) for x in seen["cells_by_p50"] if x != ""]
    assert p50 == sorted(p50) and len(p50) == sum(1 for r in report_html.cell_rows(_docs()) if r["p50_ms"] is not None)
    assert seen["cells_ok"] and set(seen["cells_ok"]) == {"ok"}
    shots = Path(os.environ.get("QKIT_BROWSER_SHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report-html.png"
    _chromium(url, [f"--screenshot={shot}", "--window-size=1400,2200", "--virtual-time-budget=5000"])
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1400, 2200)
        grey = np.asarray(img.convert("L"), dtype=np.float64)
    assert grey.std() > 10.0 and (grey < 128).mean() > 0.005, "the screenshot is blank"


def _docs() -> list[dict[str, Any]]:
    from kit.results.store import load_results

    return load_results(REFERENCE).docs
