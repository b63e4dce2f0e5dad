"""coinfeat serve: the JSON API with bad input, and the page end to end in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    EURO,
    EURO_GROUPS,
    LITE0,
    PILES,
    needs_euro,
    needs_lite0,
    pile,
    small_config,
    write_class_folders,
)
from PIL import Image

from coinfeat import ExtractConfig, extract_features
from coinfeat.fit import fit_head
from coinfeat.serve import Recogniser, create_app

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium/chromium-driver absent"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("serve")
    data = write_class_folders(root / "d", per_class=8)
    names = {
        "copper": "1 Kurus,Turkish lira,turkey",
        "gold": "5 Kurus,Turkish lira,turkey",
        "silver": "1 Euro,Euro,spain",
    }
    (data / "cat_to_name.json").write_text(json.dumps(names))
    extract_features(data, root / "s", small_config())
    fit_head(root / "s", "logreg", root / "head")
    app = create_app(Recogniser(root / "s", root / "head"), max_upload_mb=0.05)
    return TestClient(app), data


def test_a_head_alone_is_served_without_a_collection(client, tmp_path):
    from fastapi.testclient import TestClient

    _, data = client
    head = Path(client[0].get("/api/health").json()["head_dir"])
    api = TestClient(create_app(Recogniser(head_dir=head)))
    assert api.get("/api/health").json()["collection"] == 0
    assert api.get("/api/collection").json() == {"photos": []}
    assert api.get("/api/photo", params={"path": "gold/gold1_0.jpg"}).status_code == 404
    body = api.post(
        "/api/predict", files={"image": ("c.jpg", (data / "gold" / "gold1_0.jpg").read_bytes())}
    ).json()
    assert body["predictions"][0]["label"] == "gold" and body["neighbours"] == []
    assert isinstance(body["unknown"], bool)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def test_health_page_and_predict(client):
    api, data = client
    health = api.get("/api/health").json()
    assert health["status"] == "ok" and health["classes"] == 3 and health["pretrained"] is False
    page = api.get("/")
    assert page.status_code == 200 and "/api/predict" in page.text
    answer = api.post(
        "/api/predict", files={"image": ("c.jpg", (data / "gold" / "gold1_0.jpg").read_bytes())}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"][0]["label"] == "gold"
    sets = body["answer_set"]  # calibrated only when val holds 20 photos or more
    assert sets is None or (sets["labels"][0] == "gold" and sets["confidence"] == 0.9)
    assert body["predictions"][0]["name"] == "5 Kurus,Turkish lira,turkey"
    turkish = sum(p["probability"] for p in body["predictions"] if p["label"] != "silver")
    assert body["parts"]["country"] == {"value": "turkey", "probability": pytest.approx(turkish, abs=2e-4)}
    assert abs(sum(p["probability"] for p in body["predictions"]) - 1) < 0.01
    assert body["neighbours"] and body["model_input"].startswith("data:image/png;base64,")
    similar = api.get("/api/similar", params={"path": body["neighbours"][0]["path"], "k": 2}).json()
    assert len(similar["neighbours"]) == 2
    assert api.get("/api/photo", params={"path": body["neighbours"][0]["path"]}).status_code == 200


def test_count_api_answers_like_the_cli_and_refuses_bad_uploads(client):
    api, _ = client
    photo = pile([(120, 120, 50), (260, 120, 45), (190, 240, 55)], size=(400, 320))
    answer = api.post("/api/count", files={"image": ("pile.jpg", _jpeg(photo))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["coins"]) == 3 and body["annotated"].startswith("data:image/png;base64,")
    assert body["message"].startswith("3 coin(s)") and body["pretrained"] is False
    assert {"classifier", "with_sizes"} <= set(body["coins"][0])
    empty = api.post("/api/count", files={"image": ("e.jpg", _jpeg(Image.new("RGB", (300, 200), "white")))})
    assert empty.status_code == 200 and empty.json()["message"] == "no coin found in this photo"
    assert api.post("/api/count", files={"image": ("x.jpg", b"not an image")}).status_code == 415
    big = Image.effect_noise((400, 400), 80).convert("RGB")
    assert api.post("/api/count", files={"image": ("b.png", _png(big))}).status_code == 413
    assert api.get("/api/health").json()["status"] == "ok"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_bad_uploads_get_4xx_and_the_server_keeps_serving(client):
    api, data = client
    cases = [
        (b"", 415),
        (b"plain text, not a photo", 415),
        ((data / "gold" / "gold1_0.jpg").read_bytes()[:200], 415),
        (_jpeg(Image.effect_noise((300, 300), 100).convert("RGB")) * 3, 413),
    ]
    for payload, status in cases:
        response = api.post("/api/predict", files={"image": ("x.jpg", payload)})
        assert response.status_code == status, (status, response.text)
        assert response.json()["detail"]
    assert api.post("/api/predict").status_code == 422
    assert api.get("/api/photo", params={"path": "../../etc/passwd"}).status_code == 404
    assert api.get("/api/similar", params={"path": "nope.jpg"}).status_code == 404
    assert api.get("/api/health").json()["status"] == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def browsing(app, tmp_path):
    """The app served on a free loopback port and a headless Chromium at its page."""
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=390,1200",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        yield driver
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.browser
@needs_browser
@needs_euro
@needs_lite0
def test_page_end_to_end_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    data = tmp_path / "euro"
    for class_dir in sorted((EURO / "train").iterdir()):
        (data / "train" / class_dir.name).mkdir(parents=True)
        for photo in sorted(class_dir.glob("*.jpg"))[:20]:
            shutil.copy(photo, data / "train" / class_dir.name / photo.name)
    config = ExtractConfig(backbone=str(LITE0), group_regex=EURO_GROUPS, progress=False)
    extract_features(data, tmp_path / "s", config)
    fit_head(tmp_path / "s", "knn", tmp_path / "knn", params={"k": 5})
    with browsing(create_app(Recogniser(tmp_path / "s", tmp_path / "knn")), tmp_path) as driver:
        query = sorted((EURO / "test" / "1e").glob("*.jpg"))[0]
        driver.find_element(By.ID, "file").send_keys(str(query))
        wait = WebDriverWait(driver, 60)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#bars .prediction")))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#grid .neighbour")))
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#bars .prediction .label")]
        tiles = driver.find_elements(By.CSS_SELECTOR, "#grid .neighbour")
        assert labels and labels[0] in {"1c", "2c", "5c", "10c", "20c", "50c", "1e", "2e"}
        assert len(tiles) == 8
        assert driver.find_element(By.ID, "seen").get_attribute("src").startswith("data:image/png")
        assert driver.find_element(By.ID, "error").text == ""
        screenshot = Path(tmp_path) / "serve.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        bad = tmp_path / "not-a-photo.jpg"
        bad.write_text("hello")
        driver.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(lambda d: "not a usable image" in d.find_element(By.ID, "error").text)
        if PILES.is_dir():  # count the coins of a real 12 Mpx photo of a pile
            driver.find_element(By.ID, "mode-count").click()
            driver.find_element(By.ID, "file").send_keys(str(PILES / "train" / "train_1.jpg"))
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#coins tr.coin")))
            rows = driver.find_elements(By.CSS_SELECTOR, "#coins tr.coin")
            assert 28 <= len(rows) <= 30
            assert "coin(s)" in driver.find_element(By.ID, "total").text
            assert "EUR" in driver.find_element(By.ID, "total").text
            assert driver.find_element(By.ID, "annotated").get_attribute("src").startswith("data:image/png")
            driver.save_screenshot(str(tmp_path / "count.png"))


@pytest.mark.browser
@needs_browser
def test_serve_with_nothing_set_up_identifies_an_uploaded_photo_with_the_built_in_model(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from coinfeat.demo import sample_dir

    with browsing(create_app(Recogniser()), tmp_path) as driver:
        query = sorted((sample_dir() / "test" / "2e").glob("*.jpg"))[0]
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: not d.find_element(By.ID, "pick").is_displayed())
        driver.find_element(By.ID, "file").send_keys(str(query))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#bars .prediction")))
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#bars .prediction .label")]
        assert labels[0] == "2e"
        assert driver.find_elements(By.CSS_SELECTOR, "#grid .neighbour") == []
        assert not driver.find_element(By.ID, "similar-title").is_displayed()
        assert not driver.find_element(By.ID, "warning").is_displayed(), "pretrained: no warning"
        driver.save_screenshot(str(tmp_path / "serve-builtin.png"))


@pytest.mark.slow
def test_a_slow_prediction_does_not_hold_up_a_health_check(client, monkeypatch):
    import asyncio

    import httpx

    api, data = client
    photo = (data / "gold" / "gold1_0.jpg").read_bytes()
    started = threading.Event()

    def slow(self, payload):
        started.set()
        time.sleep(1.5)
        return {"predictions": []}

    monkeypatch.setattr(Recogniser, "recognise", slow)
    finished = []

    async def both():
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def predict():
                await http.post("/api/predict", files={"image": ("c.jpg", photo)})
                finished.append("predict")

            async def health():
                while not started.is_set():
                    await asyncio.sleep(0.01)
                await http.get("/api/health")
                finished.append("health")

            await asyncio.gather(predict(), health())

    asyncio.run(both())
    assert finished == ["health", "predict"]


def test_api_similar_leaves_out_every_identical_copy_like_exclude_self(tmp_path):
    from fastapi.testclient import TestClient

    from coinfeat import open_store
    from coinfeat.similar import find_similar

    data = write_class_folders(tmp_path / "d", per_class=8)
    extract_features(data, tmp_path / "s", small_config())
    original = open_store(tmp_path / "s").select("train")[1]["path"].iloc[0]
    copy = str(Path(original).with_name(Path(original).stem.split("_")[0] + "_9.jpg"))  # same photo group
    shutil.copy(data / original, data / copy)
    extract_features(data, tmp_path / "s", small_config())
    fit_head(tmp_path / "s", "centroid", tmp_path / "head")
    api = TestClient(create_app(Recogniser(tmp_path / "s", tmp_path / "head")))
    served = api.get("/api/similar", params={"path": original, "k": 5}).json()["neighbours"]
    [cli] = find_similar([original], tmp_path / "s", k=5, exclude_self=True)
    assert copy not in [n["path"] for n in served]
    assert [n["path"] for n in served] == [str(Path(n.path).relative_to(data)) for n in cli.neighbours]
