"""The web page in a real browser: headless Chromium (selenium) against a real uvicorn process
on 127.0.0.1. It types a message, gets the label and the shaded explanation, uploads a CSV
and downloads the predictions. A screenshot is written to the test's tmp dir, and to
docs/serve-page.png when GPTCLASSIFY_SCREENSHOT is set (that is how the README's was made)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import REPO_ROOT
from gptclassify.predict.files import safe_csv_cell

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MESSAGE = "<script>window.pwned = 1</script> WINNER!! Claim your £900 prize now, call 09061701461"
PLAIN = "Congratulations! You have won a £1000 gift card. Text CLAIM to 80082 before midnight"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and its driver (Debian: apt-get install chromium chromium-driver); "
    "CI (.ci/run) installs them",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """`gptclassify serve` in its own process, stopped after the module's tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gptclassify",
                "serve",
                str(tiny_run.path),
                "--port",
                str(port),
                "--precision",
                "fp32",
                "--no-access-log",
                "--max-texts",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the server did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def browser(tmp_path):
    pytest.importorskip("selenium", reason="needs selenium (the dev extra installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1800",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_classifies_explains_and_handles_a_file(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    find = browser.find_element
    browser.get(server + "/")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#info dt")) > 0)
    assert "ham, spam" in find(By.ID, "info").text

    # one message, with markup in it
    find(By.ID, "text").send_keys(MESSAGE)
    find(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "label").text != "")
    label = find(By.ID, "label").text
    assert label in ("ham", "spam")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    assert [b.get_attribute("data-label") for b in bars] == ["ham", "spam"]
    widths = [
        float(b.find_element(By.CLASS_NAME, "fill").value_of_css_property("width")[:-2])
        for b in bars
    ]
    assert sum(w > 0 for w in widths) >= 1

    # the explanation: both views, shaded token by token, and the method named
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#why-attr .tok")) > 0)
    for view in ("why-prefix", "why-attr"):
        tokens = browser.find_elements(By.CSS_SELECTOR, f"#{view} .tok")
        assert "".join(t.get_attribute("textContent") for t in tokens) == MESSAGE
        colours = {t.value_of_css_property("background-color") for t in tokens}
        assert len(colours) > 3  # shaded, not one flat colour
    assert "integrated gradients" in find(By.ID, "why-attr-title").text

    # the sentence under the attribution says which way log p(target) moved
    note = find(By.ID, "why-note").text
    moved = re.search(r"(rose|fell) from (-?\d+\.\d+) \(no tokens\) to (-?\d+\.\d+)", note)
    assert moved or "stayed at about" in note, note
    if moved:
        assert (moved[1] == "rose") == (float(moved[3]) > float(moved[2]))

    # the class to explain can be chosen; the explanation then targets it
    options = [
        o.get_attribute("value") for o in find(By.ID, "target").find_elements(By.TAG_NAME, "option")
    ]
    assert options == ["", "ham", "spam"]
    other = "ham" if label == "spam" else "spam"
    Select(find(By.ID, "target")).select_by_value(other)
    find(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "why-target").text == other)
    assert find(By.ID, "label").text == label  # the label is still the model's
    Select(find(By.ID, "target")).select_by_value("")

    # two classes: a threshold on the second class's probability decides the label
    assert find(By.ID, "threshold-row").is_displayed()
    for value, expected in (("0", "spam"), ("1", "ham")):
        browser.execute_script(
            "const t = document.getElementById('threshold'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('change'));",
            value,
        )
        wait.until(lambda d, e=expected: d.find_element(By.ID, "label").text == e)
        wait.until(lambda d: d.find_element(By.ID, "status").text == "")
    browser.execute_script(
        "const t = document.getElementById('threshold'); t.value = '0.5';"
        "t.dispatchEvent(new Event('change'));"
    )
    wait.until(lambda d: d.find_element(By.ID, "label").text == label)
    wait.until(lambda d: d.find_element(By.ID, "status").text == "")

    # the <script> in the message is text on the page and never ran
    assert "<script>window.pwned = 1</script>" in find(By.ID, "why-attr").text
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.execute_script("return document.scripts.length") == 1

    # a CSV file: a table of predictions, and the predictions as a download
    path = tmp_path / "messages.csv"
    rows = [
        {"id": "1", "message": "Ok lar... see you at home"},
        {"id": "2", "message": 'FREE entry, "win" a prize: text WIN to 87121'},
        {"id": "3", "message": "Sorry, I'll call later\nbye"},
        {"id": "-4", "message": '=HYPERLINK("http://evil.example","win")'},
        {"id": "+5", "message": "@SUM(1+1) -- call now"},
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "message"])
        writer.writeheader()
        writer.writerows(rows)
    find(By.ID, "file").send_keys(str(path))
    wait.until(lambda d: "5 rows classified" in d.find_element(By.ID, "file-status").text)
    table = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    assert len(table) == 5  # five rows, three requests (the server takes two texts at a time)
    cells = [
        [td.get_attribute("textContent") for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table
    ]
    assert [c[1] for c in cells] == [r["message"] for r in rows]  # shown as they are
    assert all(c[2] in ("ham", "spam") for c in cells)
    assert find(By.ID, "column").get_attribute("value") == "message"
    counts = {
        c.get_attribute("data-label"): int(c.find_element(By.TAG_NAME, "b").text)
        for c in browser.find_elements(By.CSS_SELECTOR, "#counts .count")
    }
    assert counts == {name: sum(c[2] == name for c in cells) for name in ("ham", "spam")}

    find(By.ID, "download").click()
    target = browser.downloads / "predictions.csv"
    deadline = time.monotonic() + 20
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(target, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    # cells a spreadsheet would run as formulas get an apostrophe; numbers and text stay
    assert [r["message"] for r in got] == [safe_csv_cell(r["message"]) for r in rows]
    assert got[3]["message"] == "'" + rows[3]["message"] and got[3]["id"] == "-4"
    assert got[4]["message"] == "'" + rows[4]["message"] and got[4]["id"] == "+5"
    assert [r["message"] for r in got[:3]] == [r["message"] for r in rows[:3]]
    assert [r["label"] for r in got] == [c[2] for c in cells]
    assert all(abs(float(r["prob_ham"]) + float(r["prob_spam"]) - 1) < 1e-6 for r in got)
    # the page's rule is predict/files.safe_csv_cell's, cell for cell
    probes = [
        "=1+1",
        "+1",
        "-1.5e3",
        "-",
        "@x",
        "\tx",
        "\rx",
        "a=b",
        "",
        "+ 1",
        ".5",
        "-.5x",
        "'=x",
    ]
    assert browser.execute_script("return arguments[0].map(safeCell)", probes) == [
        safe_csv_cell(p) for p in probes
    ]

    # the screenshot for the README: a plain message, its label and its explanation on top
    find(By.ID, "text").clear()
    find(By.ID, "text").send_keys(PLAIN)
    find(By.ID, "classify").click()
    wait.until(lambda d: "£1000" in d.find_element(By.ID, "why-attr").text)
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("GPTCLASSIFY_SCREENSHOT"):
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "serve-page.png")
