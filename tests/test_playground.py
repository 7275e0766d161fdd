"""The playground page driven in headless Chromium (Playwright on Debian's `chromium` package): a 3-way support
set typed in, predictions shown with the right labels, a screenshot kept as a test artifact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fastadapt.serve import ServedModel, create_app
from fastadapt.training import Trainer, build_experiment, resolve_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _skip(reason: str) -> None:
    """Skips, saying why; a failure where the environment promises Chromium (CI sets FASTADAPT_REQUIRE_CHROMIUM)."""
    if os.environ.get("FASTADAPT_REQUIRE_CHROMIUM"):
        pytest.fail(f"FASTADAPT_REQUIRE_CHROMIUM is set but {reason}")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServedModel]]:
    import uvicorn

    overrides = ["training.iterations=3", "training.val_every=0", "training.checkpoint_every=3", "model.channels=8"]
    Trainer(build_experiment(resolve_config("digits_protonet", overrides)), tmp_path / "digits", progress=False).run()
    served = ServedModel(tmp_path / "digits")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = uvicorn.Server(uvicorn.Config(create_app([served]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    start = time.monotonic()
    while not app.started:
        assert time.monotonic() - start < 30, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", served
    app.should_exit = True
    thread.join(timeout=10)


def test_the_playground_adapts_and_predicts_in_a_browser(server: tuple[str, ServedModel], tmp_path: Path) -> None:
    if CHROMIUM is None:
        _skip("no chromium on PATH (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip("playwright is not installed (the dev extra installs it)")
    url, served = server
    task = served.experiment.sources["test"].sample(torch.Generator().manual_seed(0))
    names = ["cat", "dog", "owl"]
    support = [
        {"input": x.tolist(), "label": names[int(y)]} for x, y in zip(task.support_x, task.support_y, strict=True)
    ]
    # the support images themselves, as one batch: batch norm sees the support batch again, so each lands on its
    # own prototype and the right label is certain, whatever the briefly trained network does
    inputs = [e["input"] for e in support]
    artifacts = Path(os.environ.get("FASTADAPT_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#model option[value='digits']", state="attached")
        assert "protonet on digits" in page.text_content("#about")
        page.fill("#support", "\n".join(json.dumps(e) for e in support))
        page.fill("#inputs", "\n".join(json.dumps(x) for x in inputs))
        page.click("#predict")
        page.wait_for_selector("[data-testid=prediction]")
        shown = [page.text_content(f"[data-testid=prediction]:nth-child({i + 1}) .top") for i in range(3)]
        assert shown == names
        assert "adapted in" in page.text_content("#timing")
        assert page.text_content("#error") == ""
        page.screenshot(path=str(artifacts / "playground.png"), full_page=True)
        browser.close()
    assert (artifacts / "playground.png").stat().st_size > 10_000
