"""JupyterLab in a real (headless) browser: notebook 04 runs and its widgets and plotly render.

Needs Debian's chromium (``/usr/bin/chromium``; `.ci/run` installs it) and the ``playwright``
Python package; the browser is never downloaded. Skips when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bmlib import runner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("notebooks"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
    pytest.mark.skipif(os.environ.get("BMLIB_BROWSER_TEST") == "0", reason="BMLIB_BROWSER_TEST=0"),
    pytest.mark.skipif(
        not any(p.name.startswith("04_") for p in runner.discover_notebooks()),
        reason="notebook 04 (issue #5) is not written yet",
    ),
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path, smoke_run: runner.RunRecord):
    """JupyterLab on localhost (no token, test only) serving a parameterised copy of notebook 04."""
    import papermill

    assert smoke_run.ok, smoke_run.failure()
    work = tmp_path / "lab"
    work.mkdir()
    nb04 = runner.discover_notebooks()[-1]
    papermill.execute_notebook(
        str(nb04), str(work / nb04.name), parameters={"RUN_DIR": smoke_run.run_dir, "SMOKE": True},
        prepare_only=True,
    )
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--notebook-dir={work}", "--ServerApp.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells by command, not by menu clicks
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    # Every cell attached to the DOM (JupyterLab's default windowing attaches off-screen cells
    # lazily, so outputs below the fold may be missing from the page when checked).
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    cmd.append(f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}")
    cmd.append(f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}")
    log = open(tmp_path / "lab.log", "w")
    # the kernel must use Jupyter's inline backend as a user's would, not the tests' Agg
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "lab.log").read_text())
            time.sleep(0.5)
    else:
        proc.terminate()
        raise RuntimeError("JupyterLab did not start in 60 s:\n" + (tmp_path / "lab.log").read_text())
    yield url, nb04.name
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_notebook_04_runs_in_jupyterlab(lab) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url, name = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{name}", timeout=60_000)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        # all cells attached (windowingMode "none"); the notebook model may still be loading
        page.wait_for_function("document.querySelectorAll('.jp-Notebook .jp-CodeCell').length >= 10",
                               timeout=60_000)
        # Run every cell through JupyterLab's own command once the notebook's kernel is ready (menu
        # clicks raced with the first start of a fresh JupyterLab: the run was sometimes not taken).
        started = page.evaluate(
            """async (name) => {
                const app = window.jupyterapp;
                const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path.endsWith(name));
                if (!panel) { return 'notebook panel not found'; }
                app.shell.activateById(panel.id);
                await panel.context.ready;
                await panel.sessionContext.ready;
                await app.commands.execute('notebook:run-all-cells');
                return 'ok';
            }""",
            name,
        )
        assert started == "ok", started
        # Finished when no cell is queued or running ("[*]") and the first has run; an error stops
        # "Run All" and leaves later cells at "[ ]" (checked below). A busy machine takes minutes.
        prompts_js = "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)"
        page.wait_for_function(
            f"""() => {{
                const prompts = {prompts_js};
                return prompts.length > 0 && /\\[\\d+\\]/.test(prompts[0]) && !prompts.some(t => t.includes('*'));
            }}""",
            timeout=480_000, polling=1_000,
        )
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] >> text=Traceback")
        assert errors.count() == 0, errors.first.inner_text()
        not_run = [t for t in page.evaluate(f"() => {prompts_js}") if not any(c.isdigit() for c in t)]
        assert not not_run, f"{len(not_run)} code cells did not run"
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        assert page.locator(".jp-RenderedText >> text=Error").count() == 0
        page.wait_for_selector(".js-plotly-plot", state="attached", timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 1
        widgets = page.locator(".jupyter-widgets .widget-dropdown select, .jupyter-widgets select")
        assert widgets.count() >= 1, "the ipywidgets explorer did not render"
        explorer_images = page.locator(".jupyter-widgets .jp-OutputArea-output img")
        assert explorer_images.count() >= 1, "the explorer's output area shows no figure"
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "jupyterlab_notebook04.png"), full_page=False)
        browser.close()
