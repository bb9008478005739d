"""The built site in headless Chromium, with every request that leaves localhost blocked."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

from tests.site import build_quick_site, serve, toc_pages

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def site_url():
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the browser tests.")
        pytest.skip(message)
    html = build_quick_site()
    with serve(html) as url:
        yield url


@pytest.fixture(scope="session")
def browser(site_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageVisit:
    """A page opened with external requests blocked, recording what went wrong."""

    def __init__(self, browser, url):
        self.context = browser.new_context()
        self.external_requests: list[str] = []
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.context.route("**/*", self._only_localhost)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on(
            "console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None
        )
        self.response = self.page.goto(url, wait_until="load")

    def _only_localhost(self, route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.external_requests.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, site_url):
    opened = []

    def open_page(path):
        page_visit = PageVisit(browser, site_url + path)
        opened.append(page_visit)
        return page_visit

    yield open_page
    for page_visit in opened:
        page_visit.close()


@pytest.mark.parametrize("path", toc_pages())
def test_page_renders_without_errors_or_external_requests(visit, path):
    page = visit(path)
    assert page.response is not None and page.response.ok, f"{path} answered {page.response}"
    page.page.locator("article h1").first.wait_for()
    if page.page.locator("span.math, div.math").count():
        page.page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.page.evaluate("() => MathJax.startup.promise")
        assert page.page.locator("mjx-container").count() > 0, "MathJax did not typeset the equations"
    assert page.page_errors == [], f"page errors on {path}: {page.page_errors}"
    assert page.console_errors == [], f"console errors on {path}: {page.console_errors}"
    assert page.external_requests == [], f"{path} tried to leave localhost: {page.external_requests}"


@pytest.mark.parametrize("path", [p for p in toc_pages() if p.startswith("chapters/")])
def test_chapter_figures_are_present_as_loaded_images(visit, path):
    page = visit(path)
    images = page.page.locator(".cell_output img")
    assert images.count() >= 1, f"{path} shows no figure"
    widths = images.evaluate_all("imgs => imgs.map(img => img.complete ? img.naturalWidth : 0)")
    assert all(width > 100 for width in widths), f"unloaded or tiny figures on {path}: {widths}"


def _check_cells(path: str) -> list[dict]:
    """The chapter's code cells that contain an assert (its checks)."""
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parent.parent / path.replace(".html", ".ipynb")
    cells = json.loads(notebook.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "assert " in "".join(c["source"])]


def _chapter_has_asserts(path: str) -> bool:
    return bool(_check_cells(path))


@pytest.mark.parametrize(
    "path", [p for p in toc_pages() if p.startswith("chapters/") and _chapter_has_asserts(p)]
)
def test_every_check_is_on_the_page_collapsed_behind_a_labelled_toggle(visit, path):
    page = visit(path)
    checks = _check_cells(path)
    removed = [c for c in checks if "remove-cell" in c["metadata"].get("tags", [])]
    assert not removed, f"{path}: {len(removed)} assert cells are tagged remove-cell; tag them hide-cell"
    hidden = [c for c in checks if "hide-cell" in c["metadata"].get("tags", [])]  # the rest show in full
    toggles = page.page.locator("details", has_text="Show the check")
    assert toggles.count() == len(hidden), f"{path}: {toggles.count()} check toggles for {len(hidden)} checks"
    states = toggles.evaluate_all(
        "els => els.map(el => ({open: el.open, code: Array.from(el.querySelectorAll('pre'))"
        ".map(pre => pre.textContent).join('')}))"
    )
    assert all(not state["open"] for state in states), f"a check on {path} is expanded on load"
    assert all("assert" in state["code"] for state in states), f"a toggle on {path} hides no assert"


@pytest.mark.parametrize("path", [p for p in toc_pages() if p.startswith("chapters/")])
def test_no_code_or_output_line_is_cut_off_at_laptop_width(visit, path):
    page = visit(path)
    page.page.set_viewport_size({"width": 1280, "height": 800})
    page.page.locator("article h1").first.wait_for()
    overflowing = page.page.evaluate(
        """() => Array.from(document.querySelectorAll('div.cell_input pre, div.cell_output pre'))
               .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
               .map(pre => pre.textContent.split('\\n')
                              .reduce((a, b) => (b.length > a.length ? b : a), ''))"""
    )
    assert overflowing == [], f"{path}: lines cut off at 1280 px: {overflowing[:3]}"


def test_index_redirects_to_the_introduction(visit):
    page = visit("index.html")
    page.page.wait_for_url("**/book/intro.html")
    assert "Generative Adversarial Networks" in page.page.title()


def test_training_movie_plays_on_the_static_page(visit):
    page = visit("chapters/02_toy_dynamics.html").page
    movie = page.locator("div.animation").first
    movie.wait_for()
    frame = movie.locator("img[id^='_anim_img']")
    movie.get_by_role("button", name="Pause", exact=True).click()
    movie.get_by_role("button", name="First frame", exact=True).click()
    first_src = frame.get_attribute("src")
    movie.get_by_role("button", name="Next frame", exact=True).click()
    second_src = frame.get_attribute("src")
    assert first_src.startswith("data:image/png;base64,") and second_src != first_src
    # the player's buttons show symbols, not empty Font Awesome icons
    assert movie.get_by_role("button", name="Play", exact=True).inner_text().strip() == "\u25b6"


@pytest.mark.parametrize("name", ["dcgan-mnist", "mlp-mnist"])
def test_static_latent_explorer_matches_pytorch(visit, name):
    """The JavaScript forward pass on the built page against PyTorch, for fixed z."""
    import torch

    from gan_utils import pretrained

    page = visit("chapters/07_latent_space.html").page
    page.wait_for_function(f"() => window.ganLatentExplorers && window.ganLatentExplorers['{name}']")
    G = pretrained.load_pretrained(name)
    z = torch.randn(3, G.latent_dim, generator=torch.Generator().manual_seed(0))
    if hasattr(G, "thresholds"):  # self-conditioned: also either side of where the cluster changes
        edge = G.thresholds()[len(G.thresholds()) // 2].item()
        z = torch.cat([z, z[:2]])
        z[3:, -1] = torch.tensor([edge - 1e-3, edge + 1e-3])
        assert G.clusters_of(z[3:]).diff().item() == 1
    with torch.no_grad():
        expected = G(z).flatten(1)
    got = torch.tensor(page.evaluate(
        f"zs => zs.map(z => Array.from(window.ganLatentExplorers['{name}'].forward(z)))", z.tolist()
    ))  # fmt: skip
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_conditional_static_explorer_matches_pytorch_for_every_class(visit):
    """Chapter 8's explorer: the class embedding appended to z in JavaScript, each class against PyTorch."""
    import torch

    from gan_utils import pretrained

    page = visit("chapters/08_conditional.html").page
    page.wait_for_function("() => window.ganLatentExplorers && window.ganLatentExplorers['cdcgan-mnist']")
    G = pretrained.load_pretrained("cdcgan-mnist")
    z = torch.randn(2, G.latent_dim, generator=torch.Generator().manual_seed(0))
    for label in range(G.n_classes):
        with torch.no_grad():
            expected = G(z, torch.full((2,), label)).flatten(1)
        forward = "window.ganLatentExplorers['cdcgan-mnist'].forward"
        got = torch.tensor(
            page.evaluate(f"([zs, c]) => zs.map(z => Array.from({forward}(z, c)))", [z.tolist(), label])
        )
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4, f"class {label}"
    explorer = page.locator(".gan-latent-explorer", has=page.locator("select.gan-class")).first
    read_canvas = (
        "el => Array.from(el.querySelector('canvas').getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    before = explorer.evaluate(read_canvas)
    explorer.locator("select.gan-class").select_option("2")
    assert explorer.evaluate(read_canvas) != before


def test_moving_a_static_slider_redraws_the_canvas(visit):
    page = visit("chapters/07_latent_space.html")
    explorer = page.page.locator(".gan-latent-explorer").first
    explorer.locator("canvas").wait_for()
    read_canvas = (
        "el => Array.from(el.querySelector('canvas').getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    before = explorer.evaluate(read_canvas)
    slider = explorer.locator("input.gan-direction").first
    slider.evaluate("s => { s.value = '2.5'; s.dispatchEvent(new Event('input')); }")
    after = explorer.evaluate(read_canvas)
    assert sum(before) > 0 and before != after
    assert explorer.locator("input.gan-direction + span").first.inner_text() == "2.5"
    assert page.external_requests == [] and page.page_errors == []
