"""The web UI in headless Chromium: log in, open every page, check what it shows, use the
queue page's publish and get-messages forms. Screenshots go to test-artifacts/ui/."""
import os
import time

import pika
import pytest

import management_scenario as sc
from browser import headless_chromium
from conftest import ARTIFACTS, Node

SHOTS = os.path.join(ARTIFACTS, "ui")


@pytest.fixture(scope="module")
def setup():
    node = Node("test_web_ui")
    api = sc.API(node.management_port)
    conn = sc.build_state(api, node.port)
    driver = headless_chromium()
    os.makedirs(SHOTS, exist_ok=True)
    yield node, api, driver
    driver.quit()
    conn.close()
    node.stop()


def wait_for(driver, css, timeout=10):
    from selenium.webdriver.common.by import By
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found and found[0].is_displayed():
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{css} did not appear; page shows: {driver.find_element(By.TAG_NAME, 'main').text[:500]}")


def wait_text(driver, text, timeout=10):
    from selenium.webdriver.common.by import By
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if text in body:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not on the page: {driver.find_element(By.TAG_NAME, 'body').text[:800]}")


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def test_login_refuses_a_wrong_password(setup):
    node, _, d = setup
    d.get(f"http://127.0.0.1:{node.management_port}/")
    wait_for(d, "#login-form")
    d.find_element("id", "username").send_keys("guest")
    d.find_element("id", "password").send_keys("wrong")
    d.find_element("css selector", "#login-form button").click()
    assert "Login failed" in wait_for(d, "#login-error").text
    shot(d, "00-login-failed")


def test_pages(setup):
    node, api, d = setup
    base = f"http://127.0.0.1:{node.management_port}/"
    d.get(base)
    wait_for(d, "#login-form")
    d.find_element("id", "username").clear()
    d.find_element("id", "username").send_keys("guest")
    d.find_element("id", "password").clear()
    d.find_element("id", "password").send_keys("guest")
    d.find_element("css selector", "#login-form button").click()
    wait_for(d, "#node-name")
    body = wait_text(d, "Connections")
    assert "warren@" in body and "Listeners" in body and "amqp" in body
    shot(d, "01-overview")

    pages = [
        ("connections", "scenario-consumer", "02-connections"),
        ("channels", "guest", "03-channels"),
        ("exchanges", "orders", "04-exchanges"),
        ("queues", "orders.eu", "05-queues"),
        ("users", "alice", "08-users"),
        ("vhosts", "the shop", "09-vhosts"),
    ]
    for path, text, name in pages:
        d.get(base + "#/" + path)
        wait_text(d, text)
        shot(d, name)
    body = wait_text(d, "shop")
    d.get(base + "#/queues")
    body = wait_text(d, "orders.eu")
    assert "work" in body and "Add a queue" in body
    d.get(base + "#/exchanges/shop/orders")
    wait_text(d, "Bindings from this exchange")
    assert "eu.#" in wait_text(d, "orders.eu")
    shot(d, "06-exchange")


def test_queue_page_publishes_and_gets(setup):
    node, api, d = setup
    base = f"http://127.0.0.1:{node.management_port}/"
    api.ok("PUT", "/api/queues/shop/ui-q", {"durable": False})
    d.get(base + "#/queues/shop/ui-q")
    wait_for(d, "#queue-name")
    form = d.find_element("id", "publish")
    form.find_element("name", "payload").send_keys("hello from the browser")
    form.find_element("name", "headers").send_keys('{"source": "ui"}')
    form.find_element("css selector", "button").click()
    assert "Message published." in wait_for(d, "#flash").text
    assert api.get("/api/queues/shop/ui-q")[1]["messages_ready"] == 1

    d.find_element("css selector", "#get-form button").click()
    body = wait_text(d, "hello from the browser")
    assert "Message 1" in body and '"source":"ui"' in body.replace(" ", "")
    shot(d, "07-queue-get")
    # ack_requeue_true put it back; an AMQP client sees it, redelivered.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, "shop"))
    method, props, payload = conn.channel().basic_get("ui-q", auto_ack=True)
    conn.close()
    assert payload == b"hello from the browser" and method.redelivered and props.headers == {"source": "ui"}


def test_forms_create_objects(setup):
    node, api, d = setup
    base = f"http://127.0.0.1:{node.management_port}/"
    d.get(base + "#/vhosts")
    form = wait_for(d, "#add-vhost")
    form.find_element("name", "name").send_keys("from-ui")
    form.find_element("css selector", "button").click()
    wait_text(d, "Virtual host from-ui added.")
    assert api.get("/api/vhosts/from-ui")[0] == 200
    d.get(base + "#/users")
    form = wait_for(d, "#add-user")
    form.find_element("name", "name").send_keys("ui-user")
    form.find_element("name", "password").send_keys("pw")
    form.find_element("name", "tags").send_keys("monitoring")
    form.find_element("css selector", "button").click()
    wait_text(d, "User ui-user added.")
    assert api.get("/api/users/ui-user")[1]["tags"] == ["monitoring"]


def test_federation_page(setup):
    """The Federation page lists links with their state and error, and upstreams with their
    credentials masked."""
    node, api, d = setup
    s, b, _ = api.call("PUT", "/api/parameters/federation-upstream/%2F/nowhere",
                       {"value": {"uri": "amqp://fed:hidden-pw@127.0.0.1:1", "reconnect-delay": 30}})
    assert s in (201, 204), b
    s, b, _ = api.call("PUT", "/api/policies/%2F/ui-fed", {"pattern": "^ui-fed$", "definition": {"federation-upstream": "nowhere"}, "apply-to": "exchanges"})
    assert s in (201, 204), b
    s, b, _ = api.call("PUT", "/api/exchanges/%2F/ui-fed", {"type": "fanout", "durable": True})
    assert s in (201, 204), b
    base = f"http://127.0.0.1:{node.management_port}/"
    d.get(base + "#/login/guest/guest")
    wait_for(d, "#node-name")
    deadline = time.time() + 15
    d.get(base + "#/federation")
    while time.time() < deadline:
        d.refresh()  # (the same hash again would not render the page again)
        body = wait_text(d, "Upstreams")
        if "error" in body:
            break
        time.sleep(0.5)
    assert "ui-fed" in body and "nowhere" in body and "error" in body, body
    assert "hidden-pw" not in body and "fed:" not in body, body
    shot(d, "10-federation")
    api.call("DELETE", "/api/policies/%2F/ui-fed")
    api.call("DELETE", "/api/parameters/federation-upstream/%2F/nowhere")
