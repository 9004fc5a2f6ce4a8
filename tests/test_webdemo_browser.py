"""The web demo in a real browser: the page served by its launcher (`python -m webdemo`, so with the shipped
settings), driven by Playwright in Debian's chromium, two visitors at once.

Without chromium or Playwright these tests skip; under CI (CI=true) they fail instead, so a runner without a
browser cannot pass as green (`scripts/install.sh --dev` installs both).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fixtures.tool_model import ANSWER, QUESTION, REASONING_FIRST, RESULT

REPO = Path(__file__).resolve().parents[1]
WAIT_MS = 180_000  # a reply on a busy 2-core machine; the page shows it in about a second when idle


def chromium_or_skip() -> str:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "needs Playwright (pip install -e '.[dev]')"
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        reason = reason or "needs Debian's chromium (apt-get install chromium)"
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; scripts/install.sh --dev installs it for CI", pytrace=False)
        pytest.skip(reason)
    return executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
            return response.read() == b"ok"
    except OSError:
        return False


@pytest.fixture(scope="session")  # the session scope of `tool_checkpoint`: checked before the model is trained
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def served(chromium, tool_checkpoint, tmp_path_factory):
    """(process, port): the launcher serving the tool checkpoint, as an operator starts it, from the repo root."""
    port, log = free_port(), tmp_path_factory.mktemp("webdemo") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "webdemo", "--model", str(tool_checkpoint),
                                 "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):  # the server starts in seconds; a loaded machine gets two minutes
            if healthy(port):
                break
            if proc.poll() is not None:
                break
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        assert healthy(port), f"the web demo did not start:\n{log.read_text(errors='replace')[-3000:]}"
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port`, from /proc/net/tcp{,6} (state 0A = LISTEN)."""
    found = set()
    for name in ("tcp", "tcp6"):
        table = Path("/proc/net") / name
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if name == "tcp" else address)
    return found


def test_the_launched_page_listens_on_loopback_only(served):
    _proc, port = served
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("reads the listening sockets from /proc/net/tcp (Linux)")
    assert listening_addresses(port) == {"127.0.0.1"}


def open_visitor(browser, port: int, hosts: set[str]):
    """A new browser session on the page, with the calculator offered and thinking on."""
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=WAIT_MS)
    page.get_by_test_id("stCheckbox").filter(has_text="calculate_math").click()
    expect(page.get_by_role("checkbox", name="calculate_math")).to_be_checked()
    page.get_by_test_id("stRadioOption").filter(has_text="on").click()  # thinking on
    expect(page.get_by_role("radio", name="on")).to_be_checked()
    return page


def test_two_visitors_chat_at_once_and_each_sees_the_tool_call_and_its_result(chromium, served):
    from playwright.sync_api import expect, sync_playwright

    proc, port = served
    hosts: set[str] = set()
    with sync_playwright() as p:
        # chromium's sandbox refuses to start as root (CI containers); the page is our own, on loopback
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            pages = [open_visitor(browser, port, hosts) for _ in range(2)]
            for page in pages:  # both ask before either reply is read: the second waits for the model's lock
                page.get_by_test_id("stChatInputTextArea").fill(QUESTION)
                page.get_by_test_id("stChatInputTextArea").press("Enter")
            for page in pages:
                expect(page.get_by_text(ANSWER, exact=True)).to_be_visible(timeout=WAIT_MS)
                messages = page.get_by_test_id("stChatMessage")
                expect(messages).to_have_count(2)  # the question, and one reply holding calls and results
                reply = messages.nth(1)
                # waits for both blocks: the page draws code blocks with a component its browser loads lazily, so
                # on a busy machine the answer's text can be on screen before they are
                expect(reply.get_by_test_id("stCode")).to_have_text(
                    ['calculate_math({"expression": "37 * 48"})', RESULT], timeout=WAIT_MS)
                thinking = reply.get_by_test_id("stExpander").first
                expect(thinking).to_contain_text(REASONING_FIRST)
                thinking.get_by_text("Thinking").click()  # the reasoning folds away
                expect(thinking.get_by_text(REASONING_FIRST)).to_be_hidden()
        finally:
            browser.close()
    assert proc.poll() is None and healthy(port)  # the server outlived both sessions
    assert hosts == {f"127.0.0.1:{port}"}  # the page asked nothing of any other host (no usage statistics)
