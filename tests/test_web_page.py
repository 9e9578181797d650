"""The web page at / in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium), against
a real uvicorn server on a loopback port, with fake models so that it stays fast."""

import shutil

import pytest

from ingest.sync import index_folder
from rag.api import Index
from rag.keys import KeyStore
from rag.server import create_app
from serving import live_server, patch_models, small_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)"
)
PHONE = (390, 844)  # CSS pixels of a common phone in portrait


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def site(tmp_path, monkeypatch):
    embedder, _ = patch_models(monkeypatch)
    index_dir = tmp_path / "idx"
    index_folder(small_corpus(tmp_path), index_dir, embedder)
    _, token = KeyStore(index_dir).add("alice")
    with Index.open(index_dir) as index, live_server(create_app(index, KeyStore(index_dir))) as url:
        yield url, token


def ask(browser, url, key, question, window=(1100, 900)):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(*window)
    browser.get(url)
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "save-key").click()
    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "ask").click()
    result = browser.find_element(By.ID, "result")
    finished = {"done", "unknown", "error"}
    WebDriverWait(browser, 20).until(lambda _: finished & set(result.get_attribute("class").split()))
    return result.get_attribute("class").split()[-1], browser.find_element(By.ID, "answer").text


def test_an_answer_streams_in_with_citations_that_open_their_passage(browser, site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = site
    state, answer = ask(browser, url, token, "What is the harbour dredging budget?")
    assert state == "done" and "NOK 4.2" in answer
    assert browser.execute_script("return sessionStorage.getItem('docrag-key')") == token
    hint = browser.find_element(By.ID, "key-hint")
    WebDriverWait(browser, 10).until(lambda _: hint.text.startswith("You are alice, who may read 2 documents."))
    [citation] = browser.find_elements(By.CSS_SELECTOR, "#citations button")
    assert citation.text == "[1]finance/budget.md" or citation.text == "[1] finance/budget.md"
    citation.click()
    passage = browser.find_element(By.ID, "passage-text")
    WebDriverWait(browser, 10).until(lambda _: "dredging" in passage.text)
    assert browser.find_element(By.ID, "passage-source").text == "finance/budget.md"
    assert passage.text == "The harbour dredging budget is NOK 4.2 million."
    browser.save_screenshot(str(tmp_path / "answered.png"))
    assert (tmp_path / "answered.png").stat().st_size > 10_000


def test_i_dont_know_and_a_bad_key_read_as_a_person_expects(browser, site):
    from selenium.webdriver.common.by import By

    url, token = site
    state, answer = ask(browser, url, token, "What is the unknowable harbour budget?")
    explanation = browser.find_element(By.ID, "explanation").text
    assert (state, answer) == ("unknown", "I don't know.")
    assert explanation.startswith("None of the documents you may read answers this")
    assert not browser.find_elements(By.CSS_SELECTOR, "#citations li")
    state, answer = ask(browser, url, "rag_not-a-key", "What is the harbour dredging budget?")
    assert state == "error" and "API key was not accepted" in answer and "{" not in answer


def test_usable_at_phone_width(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    url, token = site
    state, answer = ask(browser, url, token, "When does the harbour office open?", window=PHONE)
    assert state == "done" and "07:45" in answer
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scrolling
    for element_id in ("question", "ask", "key", "answer"):
        box = browser.find_element(By.ID, element_id).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, element_id
    assert browser.find_element(By.ID, "ask").rect["height"] >= 40  # a thumb-sized target
    browser.save_screenshot(str(tmp_path / "phone.png"))
