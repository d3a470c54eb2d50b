"""caption.py --serve: the login it requires on a network, the upload and queue bounds (docs/reliability.md, "The
page on a network"), and the page in a real headless browser: the login, then captions, answers and where it looks.

The command-line checks run `caption.main` in this process and fail before any model is loaded. The browser tests
share one `caption.py --serve` of the demo checkpoint, with a login from the environment and a small upload limit,
and drive Debian's Chromium through the login form, each in a fresh browser profile.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from browser import chromium, page_server, printed, require_browser
from conftest import colours_in
from PIL import Image

import caption
from captioning import AUTH_ENV, MB, PageAccess, is_loopback, page_access, serve
from data.shapes import COLOURS
from errors import UserError

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "ada", "c0rrect:horse"  # a ':' inside the password is allowed (only the first one splits)


def page_args(*argv: str):
    """The parsed command line of `caption.py --serve ARGV`."""
    return caption.build_parser().parse_args(["--serve", *argv])


# ----------------------------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("my-gpu-box.lab", False)],
)  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_a_page_on_the_network_refuses_to_start_without_a_login(capsys, monkeypatch, tmp_path):
    """One line, exit 2, before the checkpoint is even looked for (it does not exist here)."""
    monkeypatch.delenv(AUTH_ENV, raising=False)
    missing = str(tmp_path / "none.safetensors")
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        assert caption.main(["--serve", "--host", host, "--checkpoint", missing]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"error: --host {host} opens the page to the network: set a login with {AUTH_ENV}=USER:PASSWORD in the "
            "environment (or --auth USER:PASSWORD), or add --no-auth to serve it to anyone who can reach it\n"
        )
    # With a login (flag or environment) or --no-auth, it goes on to the checkpoint, which is missing here.
    monkeypatch.setenv(AUTH_ENV, f"{USER}:{PASSWORD}")
    for extra in ([], ["--no-auth"], ["--auth", "bob:pw"]):
        assert caption.main(["--serve", "--host", "0.0.0.0", "--checkpoint", missing, *extra]) == 2
        assert capsys.readouterr().err.startswith(f"error: --checkpoint {missing}: no such file or folder; accepted:")


def test_login_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert page_access(page_args()) == PageAccess()  # loopback: no login needed
    assert page_access(page_args()).login is None
    assert page_access(page_args("--auth", f"{USER}:{PASSWORD}")).login == (USER, PASSWORD)
    environ = {AUTH_ENV: f"{USER}:{PASSWORD}"}
    assert page_access(page_args("--host", "0.0.0.0"), environ).login == (USER, PASSWORD)
    assert page_access(page_args("--host", "0.0.0.0", "--auth", "bob:pw"), environ).login == ("bob", "pw")  # flag wins
    assert page_access(page_args("--host", "0.0.0.0", "--no-auth"), environ).login is None  # said on purpose
    assert PASSWORD not in repr(page_access(page_args(), environ))  # never shown, even in a traceback


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["--auth", "justauser"], {}, "--auth must be USER:PASSWORD, both non-empty"),
        (["--auth", ":pw"], {}, "--auth must be USER:PASSWORD, both non-empty"),
        (["--auth", "ada:"], {}, "--auth must be USER:PASSWORD, both non-empty"),
        (["--host", "0.0.0.0"], {AUTH_ENV: "no-colon-secret"}, f"${AUTH_ENV} must be USER:PASSWORD, both non-empty"),
        (["--auth", "a:b", "--no-auth"], {}, "--auth and --no-auth exclude each other; pick one"),
        (["--max-upload-mb", "0"], {}, "--max-upload-mb 0 is invalid; expected a number > 0"),
        (["--queue-size", "0"], {}, "--queue-size 0 is invalid; expected an integer >= 1"),
        (["--concurrency", "-1"], {}, "--concurrency -1 is invalid; expected an integer >= 1"),
    ],
)
def test_bad_page_options_are_one_line_without_the_secret(argv, environ, expected):
    with pytest.raises(UserError) as raised:
        page_access(page_args(*argv), environ)
    assert str(raised.value) == expected
    assert "secret" not in str(raised.value) and "justauser" not in str(raised.value)


def test_serve_hands_login_upload_limit_and_queue_to_gradio(monkeypatch, capsys):
    """What `serve` gives Gradio: `launch(auth=..., max_file_size=...)` and `queue(max_size=...,
    default_concurrency_limit=...)` (Gradio's launch itself is replaced: no server starts)."""
    gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install gradio)")
    launched = {}

    def launch(self, **kwargs):
        launched.update(kwargs, queue=self._queue)

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    captioner = SimpleNamespace(summary=lambda: "demo checkpoint", default_max_new_tokens=24)  # what the page reads
    access = page_access(page_args("--host", "0.0.0.0", "--max-upload-mb", "0.5", "--queue-size", "3",
                                   "--concurrency", "2"), {AUTH_ENV: f"{USER}:{PASSWORD}"})  # fmt: skip
    serve(captioner, "0.0.0.0", 7860, access)
    assert launched["auth"] == (USER, PASSWORD) and launched["max_file_size"] == MB // 2
    assert (launched["queue"].max_size, launched["queue"].default_concurrency_limit) == (3, 2)
    captured = capsys.readouterr()
    assert captured.out == f"serving demo checkpoint on http://0.0.0.0:7860, login as '{USER}'\n"
    assert PASSWORD not in captured.out + captured.err

    serve(captioner, "0.0.0.0", 7860, page_access(page_args("--host", "0.0.0.0", "--no-auth"), {}))
    assert launched["auth"] is None and launched["max_file_size"] == 20 * MB
    assert (launched["queue"].max_size, launched["queue"].default_concurrency_limit) == (16, 1)  # the defaults
    assert capsys.readouterr().err == "warning: --no-auth: anyone who can reach 0.0.0.0:7860 can use the page\n"


# -------------------------------------------------------------------------------------------- the page in a browser


def fetch(opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None, headers=None) -> tuple[int, str]:
    """(status, body) of a request, whatever the status."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def upload(opener: urllib.request.OpenerDirector, url: str, payload: bytes) -> tuple[int, str]:
    """POST one file to Gradio's upload route, as the page does."""
    boundary = "tiny-vlm-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return fetch(opener, url + "gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


@pytest.fixture(scope="module")
def served(trained_demo):
    """`caption.py --serve` on the demo checkpoint, with a login from the environment and a 0.05 MB upload limit:
    (its URL, the process). Started once for the browser tests below; each opens its own browser, with an empty
    profile, so each starts logged out."""
    require_browser()
    with page_server(trained_demo[2], "--max-upload-mb", "0.05", env={AUTH_ENV: f"{USER}:{PASSWORD}"}) as served:
        yield served


def logged_in(browser, url: str):
    """A new page of `browser` at `url`, past the login form."""
    page = browser.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("input[type=text]").fill(USER)
    page.locator("input[type=password]").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.locator("#image input[type=file]").wait_for(state="attached", timeout=60_000)
    return page


def test_login_page_in_a_headless_browser(trained_demo, served, tmp_path):
    """`caption.py --serve` with a login from the environment: without it nothing answers (HTTP 401), the browser
    gets the login form, a wrong password is refused, the right one opens the page, an upload over the limit is
    refused, and an image is captioned."""
    playwright = require_browser()
    url, server = served
    image = next(trained_demo[1].glob("shapes-*/images/*.png"))  # a few KB
    large = tmp_path / "noise.png"  # ~120 KB of noise: over the 0.05 MB limit of the server
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(large)
    assert image.stat().st_size < 0.05 * MB < large.stat().st_size
    # Over HTTP: nothing but the login answers before it; after it, the upload limit holds.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    assert fetch(opener, url + "config")[0] == 401
    assert upload(opener, url, image.read_bytes())[0] == 401
    wrong = urllib.parse.urlencode({"username": USER, "password": "guess"}).encode()
    assert fetch(opener, url + "login", wrong)[0] == 400
    right = urllib.parse.urlencode({"username": USER, "password": PASSWORD}).encode()
    assert fetch(opener, url + "login", right) == (200, json.dumps({"success": True}, separators=(",", ":")))
    assert fetch(opener, url + "config")[0] == 200
    assert upload(opener, url, image.read_bytes())[0] == 200
    status, body = upload(opener, url, large.read_bytes())
    assert status == 413 and "maximum allowed size" in body

    with playwright.sync_playwright() as p:
        browser = chromium(p, tmp_path / "profile")  # a fresh, empty user-data-dir: no login cookie yet
        page = browser.new_page()
        page.goto(url, wait_until="domcontentloaded")
        login = page.get_by_role("button", name="Login")
        playwright.expect(login).to_be_visible(timeout=60_000)
        playwright.expect(page.get_by_text("log in with the user and password")).to_be_visible()
        assert page.locator("#image").count() == 0  # the page itself is not there before the login

        def log_in(password: str) -> None:
            page.locator("input[type=text]").fill(USER)  # Gradio clears both fields after a failure
            page.locator("input[type=password]").fill(password)
            login.click()

        log_in("guess")
        playwright.expect(page.get_by_text("Incorrect Credentials")).to_be_visible(timeout=30_000)
        assert page.locator("#image").count() == 0
        log_in(PASSWORD)
        files = page.locator("#image input[type=file]")
        files.wait_for(state="attached", timeout=60_000)

        files.set_input_files(str(large))
        playwright.expect(page.get_by_text("exceed the maximum allowed size")).to_be_visible(timeout=30_000)
        output = page.locator("#output textarea")
        assert output.input_value() == ""  # nothing was captioned

        files.set_input_files(str(image))
        playwright.expect(output).not_to_have_value("", timeout=120_000)  # captioned on upload
        assert colours_in(output.input_value()), output.input_value()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert f"login as '{USER}'" in printed(server) and PASSWORD not in printed(server)


def test_the_page_captions_and_answers_in_a_headless_browser(demo_scenes, served, tmp_path):
    """Logged in: upload a shapes image, read the caption on the page, then ask a question and read the answer."""
    playwright = require_browser()
    path = next(p for p, scene in demo_scenes if "circle" in {s["kind"] for s in scene["shapes"]})
    with playwright.sync_playwright() as p:
        browser = chromium(p, tmp_path / "profile")
        page = logged_in(browser, served[0])
        page.locator("#image input[type=file]").set_input_files(str(path))
        output = page.locator("#output textarea")
        playwright.expect(output).not_to_have_value("", timeout=120_000)  # captioned on upload
        caption_text = output.input_value()
        assert colours_in(caption_text), caption_text
        assert page.locator("#image img").count() >= 1  # the uploaded image is shown

        page.locator("#question textarea").fill("what colour is the circle?")
        page.locator("#run").click()
        playwright.expect(output).not_to_have_value(caption_text, timeout=120_000)
        answer = output.input_value()
        assert answer in COLOURS, answer
        assert "Question: what colour is the circle? Answer:" in page.locator("#details").inner_text()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()


def test_the_page_shows_a_map_for_each_word_in_a_headless_browser(demo_scenes, served, tmp_path):
    """Where it looks (explain/), on the page: after the upload, hovering or clicking a word shows its maps."""
    playwright = require_browser()
    with playwright.sync_playwright() as p:
        browser = chromium(p, tmp_path / "profile")
        page = logged_in(browser, served[0])
        page.locator("#image input[type=file]").set_input_files(str(demo_scenes[0][0]))
        words = page.locator("#explain .explain-word")
        playwright.expect(words.first).to_be_visible(timeout=120_000)
        caption_text = page.locator("#output textarea").input_value()
        assert [w.strip() for w in words.all_inner_texts()] == caption_text.split()
        whole = page.locator("#explain .explain-whole img")
        playwright.expect(whole.first).to_be_visible()  # the whole output's maps, before any word is chosen
        maps = words.nth(1).locator(".explain-maps img")
        playwright.expect(maps.first).to_be_hidden()
        words.nth(1).hover()
        playwright.expect(maps.first).to_be_visible()
        assert maps.count() == 2 and maps.first.evaluate("img => img.naturalWidth") > 0
        page.mouse.move(0, 0)
        playwright.expect(maps.first).to_be_hidden()
        words.nth(2).click()  # a click focuses the word: its maps stay while the pointer is elsewhere
        page.mouse.move(0, 0)
        playwright.expect(words.nth(2).locator(".explain-maps img").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
