"""The stock ComfyUI frontend, in headless Chromium, against the whole stack running as real processes
(ComfyUI simulator, dispatcher, inference, ingest; see integration/support/stack.py).

What a person would check, in order: the UI comes up; the node library lists the workers' nodes; a
workflow queued from the UI runs, with progress shown while it runs; the output image appears on the
Save Image node; the job is listed in the job queue panel. Screenshots of each step go to
/tmp/comfy-cloud-browser-*.png.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` Python package; the
browser is never downloaded. Without Chromium the test is skipped, except under CI (CI=true), where a
missing browser is a failure. The flags keep Chromium from reaching for the network (this machine has
none; without them it stalls on start-up).
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from integration.support.stack import Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path("/tmp")

# EmptyImage (red) -> ProbeSleep (3 s of progress) -> ImageInvert -> SaveImage: the output is cyan.
WORKFLOW: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xFF0000},
    },
    "2": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": 3.0}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ui_run"}},
}

pytestmark = [pytest.mark.browser, pytest.mark.integration]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run must `apt-get install -y chromium`")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
async def page(stack: Stack) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            yield await context.new_page()
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"comfy-cloud-browser-{name}.png"))


async def close_template_browser(page: Any) -> None:
    """A first visit opens the template browser (empty here: a cloud without templates) once the
    frontend has stored its first-run settings; close it so the canvas takes clicks."""
    overlay = page.get_by_test_id("dialog-overlay")
    await page.get_by_text("All Templates").first.wait_for(timeout=30_000)
    await page.keyboard.press("Escape")
    await overlay.wait_for(state="detached", timeout=10_000)


async def test_queue_a_workflow_from_the_stock_ui(stack: Stack, page: Any) -> None:
    server_errors: list[str] = []
    page.on("response", lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)

    # 1. The UI comes up: the app registered the workers' node classes.
    await page.goto(stack.ingest_url + "/")
    await page.wait_for_function(
        """() => window.app?.graph && ['EmptyImage', 'SaveImage']
            .every(t => t in (window.LiteGraph?.registered_node_types ?? {}))""",
        timeout=60_000,
    )
    await close_template_browser(page)
    await shot(page, "1-loaded")

    # 2. The node library lists them.
    await page.get_by_role("button", name="Node Library (n)").click()
    search = page.get_by_placeholder("Search...").first
    await search.fill("Invert")
    await page.get_by_text("Invert Image").first.wait_for(timeout=10_000)
    await shot(page, "2-node-library")
    await page.get_by_role("button", name="Node Library (n)").click()

    # 3. Queue a workflow from the UI: loaded into the canvas, then the Run button.
    await page.evaluate(
        """() => {
            window.__events = [];
            const api = window.comfyAPI.api.api;
            const types = ['execution_start', 'progress', 'executed', 'execution_success', 'execution_error'];
            for (const type of types)
                api.addEventListener(type, e => window.__events.push({type, detail: e.detail}));
        }"""
    )
    await page.evaluate("(workflow) => app.loadApiJson(workflow, 'ui_run')", WORKFLOW)
    await page.get_by_role("button", name="Run", exact=True).first.click()

    # 4. Progress shows while it runs.
    await page.wait_for_function("() => window.__events.some(e => e.type === 'progress')", timeout=60_000)
    # The run panel under the Run button: "Current node: ProbeSleep 27%" (separate elements).
    await page.wait_for_function(
        "() => /Current node:\\s*ProbeSleep\\s*\\d+%/.test(document.body.innerText)", timeout=10_000
    )
    await shot(page, "3-progress")

    # 5. The output image appears on the Save Image node, served by /api/view under its unique name.
    await page.wait_for_function(
        "() => window.__events.some(e => ['execution_success', 'execution_error'].includes(e.type))",
        timeout=60_000,
    )
    events = await page.evaluate("() => window.__events")
    assert [e["type"] for e in events if e["type"].startswith("execution_")] == [
        "execution_start",
        "execution_success",
    ]
    executed = next(e["detail"] for e in events if e["type"] == "executed")
    job_id = executed["prompt_id"]
    image = executed["output"]["images"][0]
    assert image["filename"] == f"ui_run_00001__{job_id.replace('-', '')[:8]}.png"
    await page.wait_for_function("() => (app.graph.getNodeById('4')?.imgs ?? []).length > 0", timeout=30_000)
    src = await page.evaluate("() => app.graph.getNodeById('4').imgs[0].src")
    assert f"filename={image['filename']}" in src
    response = await page.request.get(src)
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    output = Image.open(io.BytesIO(await response.body())).convert("RGB")
    assert output.size == (64, 64) and output.getpixel((0, 0)) == (0, 255, 255)  # red, inverted
    await page.get_by_role("button", name="Fit View (.)").click()
    await page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    await shot(page, "4-output")

    # 6. The job is in the job queue panel (read from /api/jobs).
    await page.get_by_role("button", name="Expand job queue").click()
    await page.get_by_text(image["filename"]).first.wait_for(timeout=15_000)
    await shot(page, "5-job-queue")

    assert server_errors == [], f"server errors: {server_errors}\n{stack.logs()}"
