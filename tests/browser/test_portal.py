"""The portal and console in a real browser (headless Chromium), against `hookline serve` and a
receiver on 127.0.0.1. Each test saves screenshots under test-artifacts/browser/."""

import json
import re
import secrets
import time

from playwright.sync_api import expect

from conftest import ADMIN_KEY, shot


def new_account(hookline, name):
    status, created = hookline.call("POST", "/api/v3/accounts", {"name": name})
    assert status == 201, created
    return created["id"], created["apiKey"]


def portal_link(hookline, account_id, expires_in=None):
    body = {} if expires_in is None else {"expiresIn": expires_in}
    status, link = hookline.call("POST", f"/api/v3/accounts/{account_id}/portal-links", body)
    assert status == 201, link
    assert "#token=" in link["url"]
    return link["url"]


def open_portal(context, url):
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#app")).to_be_visible()
    return page


def create_webhook(page, url, event_type):
    page.goto(page.url.split("#")[0] + "#webhooks")
    page.click("#new-webhook")
    page.fill("#wh-url", url)
    page.fill(".picker >> xpath=.. >> input[type=search]", event_type)
    page.check(f'label.pick[data-name="{event_type}"] input')
    page.click("#wh-save")
    expect(page.locator(".webhook", has_text=url)).to_be_visible()


def fire_test_event(page, event_type, payload=None):
    page.goto(page.url.split("#")[0] + "#settings")
    page.select_option("#test-type", event_type)
    if payload is not None:
        page.fill("#test-payload", json.dumps(payload))
    page.click("#test-send")
    expect(page.locator("#test-result")).to_contain_text("to 1 webhook")


def wait_for_row(page, status, timeout=20_000):
    """The delivery log with live refresh on, until a delivery with `status` shows."""
    page.goto(page.url.split("#")[0] + "#deliveries")
    page.check("#log-live")
    row = page.locator(f'table.logs tr[data-status="{status}"]').first
    expect(row).to_be_visible(timeout=timeout)
    return row


def count(page, status):
    return int(page.locator(f"#count-{status}").inner_text())


def test_platform_opens_a_portal_and_the_customer_gets_a_test_event(hookline, receiver, context):
    console = context.new_page()
    console.goto(hookline.base + "/")
    expect(console.get_by_role("link", name=re.compile("Customer portal"))).to_be_visible()
    console.get_by_role("link", name=re.compile("Platform console")).click()
    console.fill("#signin-key", ADMIN_KEY)
    console.get_by_role("button", name="Sign in").click()
    console.fill("#account-name", "Acme Clinic")
    console.click("#create-account")
    expect(console.locator("#account-created .secret-value")).to_have_value(re.compile(r"^hlk_"))
    account_id = console.locator("#new-account-id").inner_text()
    shot(console, "console-accounts")

    with context.expect_page() as opened:
        console.locator(f'tr[data-id="{account_id}"]').get_by_role("button", name="Open portal").click()
    portal = opened.value
    expect(portal.locator("#app")).to_be_visible()
    expect(portal.locator("#who")).to_contain_text("Acme Clinic")
    # The link's token does not stay in the address bar.
    assert "token" not in portal.url

    hook = f"{receiver.base}/acme"
    create_webhook(portal, hook, "patient.created")
    fire_test_event(portal, "patient.created")
    row = wait_for_row(portal, "delivered")
    expect(row).to_contain_text("patient.created")
    assert len(receiver.deliveries("/acme")) == 1

    portal.goto(portal.url.split("#")[0] + "#overview")
    expect(portal.locator("#count-delivered")).to_have_text("1")
    assert count(portal, "failed") == 0
    shot(portal, "portal-overview")
    portal.goto(portal.url.split("#")[0] + "#deliveries")
    expect(portal.locator('table.logs tr[data-status="delivered"]')).to_be_visible()
    shot(portal, "portal-deliveries")
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    expect(portal.locator(".webhook")).to_be_visible()
    shot(portal, "portal-webhooks")


def test_a_failed_delivery_is_retried_once_the_receiver_is_fixed(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Failing Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    hook = f"{receiver.base}/failing"
    create_webhook(portal, hook, "reading.weight")

    receiver.failing = True
    try:
        fire_test_event(portal, "reading.weight")
        row = wait_for_row(portal, "failed")
        expect(row).to_contain_text("500")
        row.get_by_role("button", name="Details").click()
        detail = portal.locator("#delivery-detail")
        expect(detail.locator(".attempt")).to_have_count(2)
        expect(detail.locator(".attempt").first).to_contain_text("500")
        expect(detail.locator(".attempt").first).to_contain_text(" ms")
        # The receiver's HTML answer is shown as text and does not run.
        detail.locator("summary").first.click()
        expect(detail.locator(".response-body").first).to_contain_text("<script>window.__receiverRan = 1</script>")
        assert portal.evaluate("window.__receiverRan") is None
        shot(portal, "portal-failed-delivery")
        portal.keyboard.press("Escape")
        # The webhook shows since when its endpoint has been failing.
        portal.goto(portal.url.split("#")[0] + "#webhooks")
        expect(portal.locator(".webhook", has_text=hook).locator(".health")).to_contain_text("Every attempt has failed since")
    finally:
        receiver.failing = False

    portal.goto(portal.url.split("#")[0] + "#overview")
    expect(portal.locator("#count-failed")).to_have_text("1")
    assert count(portal, "delivered") == 0
    portal.click("#retry-all-button")
    expect(portal.locator("#retry-result")).to_contain_text("1 delivery queued again")
    expect(portal.locator("#count-delivered")).to_have_text("1", timeout=10_000)
    expect(portal.locator("#count-failed")).to_have_text("0")
    assert len(receiver.deliveries("/failing")) == 3
    shot(portal, "portal-retried")
    # The success ended the run of failures.
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    expect(portal.locator(".webhook", has_text=hook)).to_be_visible()
    expect(portal.locator(".webhook", has_text=hook).locator(".health")).to_have_count(0)


LOCAL_AN_HOUR_AGO = """() => {
  const d = new Date(Date.now() - 3600e3);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}"""


def test_replay_a_delivery_and_send_a_new_webhook_what_it_missed(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Replay Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    create_webhook(portal, f"{receiver.base}/replayed", "reading.weight")
    fire_test_event(portal, "reading.weight")
    wait_for_row(portal, "delivered")
    first = receiver.deliveries("/replayed")
    assert len(first) == 1

    portal.goto(portal.url.split("#")[0] + "#overview")
    portal.fill("#replay-since", portal.evaluate(LOCAL_AN_HOUR_AGO))
    portal.click("#replay-button")
    expect(portal.locator("#replay-result")).to_contain_text("Done: 1 of 1 sent.")
    deadline = time.time() + 10
    while len(receiver.deliveries("/replayed")) < 2 and time.time() < deadline:
        time.sleep(0.1)
    again = receiver.deliveries("/replayed")
    assert len(again) == 2
    assert again[1]["headers"]["webhook-id"] == first[0]["headers"]["webhook-id"]
    shot(portal, "portal-replayed")

    # A webhook created afterwards gets the event it missed, once.
    create_webhook(portal, f"{receiver.base}/late", "reading.weight")
    portal.goto(portal.url.split("#")[0] + "#overview")
    portal.select_option("#replay-mode", "missing")
    expect(portal.locator("#replay-until")).to_be_disabled()
    portal.fill("#replay-since", portal.evaluate(LOCAL_AN_HOUR_AGO))
    portal.click("#replay-button")
    expect(portal.locator("#replay-result")).to_contain_text("Choose the webhook")
    portal.select_option("#replay-webhook", label=f"{receiver.base}/late")
    portal.click("#replay-button")
    expect(portal.locator("#replay-result")).to_contain_text("Done: 1 of 1 sent.")
    deadline = time.time() + 10
    while not receiver.deliveries("/late") and time.time() < deadline:
        time.sleep(0.1)
    assert len(receiver.deliveries("/late")) == 1
    portal.click("#replay-button")
    expect(portal.locator("#replay-result")).to_contain_text("Done: 0 of 1 sent.")
    shot(portal, "portal-replay-missing")


def test_a_webhook_switched_off_by_a_410_says_why_and_activates_again(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Gone Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    hook = f"{receiver.base}/gone"
    create_webhook(portal, hook, "reading.weight")
    fire_test_event(portal, "reading.weight")
    wait_for_row(portal, "failed")
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    card = portal.locator(".webhook", has_text=hook)
    expect(card.locator(".badge").first).to_have_text("inactive")
    expect(card.locator(".health")).to_contain_text("Switched off")
    expect(card.locator(".health")).to_contain_text("the endpoint answered 410 Gone")
    shot(portal, "portal-webhook-switched-off")
    card.get_by_role("button", name="Activate").click()
    expect(card.locator(".badge").first).to_have_text("active")
    expect(card.locator(".health")).to_have_count(0)


def test_one_failed_delivery_is_retried_from_its_row(hookline, receiver, context):
    account_id, _ = new_account(hookline, "One Retry Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    create_webhook(portal, f"{receiver.base}/one", "order.status")
    receiver.failing = True
    try:
        fire_test_event(portal, "order.status")
        row = wait_for_row(portal, "failed")
    finally:
        receiver.failing = False
    row.get_by_role("button", name="Retry").click()
    expect(portal.locator('table.logs tr[data-status="delivered"]')).to_be_visible(timeout=15_000)


def test_secret_and_token_flows(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Secrets Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    path = "/secrets"
    create_webhook(portal, receiver.base + path, "patient.updated")
    webhook = portal.locator(".webhook").first

    # Signing secret: revealed on demand, rotated to a new one with the grace period shown.
    webhook.get_by_role("button", name="Signing secret").click()
    portal.click("#reveal-secret")
    first = portal.locator("#secret-area .secret-value").input_value()
    assert first.startswith("whsec_")
    portal.click("#rotate-secret")
    portal.locator(".dialog").last.get_by_role("button", name="Rotate").click()
    expect(portal.locator("#secret-area")).to_contain_text("24 hours")
    second = portal.locator("#secret-area .secret-value").input_value()
    assert second.startswith("whsec_") and second != first
    shot(portal, "portal-signing-secret")
    portal.keyboard.press("Escape")

    # Ping answers with its result.
    webhook.get_by_role("button", name="Ping").click()
    expect(webhook.locator(".ping-result")).to_contain_text("Pong")

    # A generated webhook token is shown once and sent with deliveries.
    webhook.get_by_role("button", name="Token").click()
    portal.click("#token-generate")
    token = portal.locator("#token-area .secret-value").input_value()
    assert len(token) == 48
    portal.keyboard.press("Escape")

    # The account secret: set, sent with deliveries, then cleared.
    portal.goto(portal.url.split("#")[0] + "#settings")
    expect(portal.locator("#account-secret-state")).to_contain_text("No secret is set")
    portal.fill("#account-secret-input", "acct-secret-" + secrets.token_hex(8))
    account_secret = portal.locator("#account-secret-input").input_value()
    portal.click("#account-secret-set")
    expect(portal.locator("#account-secret-area .secret-value")).to_have_value(account_secret)
    expect(portal.locator("#account-secret-state")).to_contain_text("A secret is set")

    fire_test_event(portal, "patient.updated")
    deadline = time.time() + 10
    while not receiver.deliveries(path) and time.time() < deadline:
        time.sleep(0.1)
    headers = receiver.deliveries(path)[-1]["headers"]
    assert headers.get("x-webhook-token") == token
    assert headers.get("x-webhook-secret") == account_secret

    # The token is never shown again: the webhook list has no trace of it.
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    expect(portal.locator(".webhook")).to_be_visible()
    assert token not in portal.content()

    # Clearing both: the next delivery carries neither.
    portal.locator(".webhook").first.get_by_role("button", name="Token").click()
    portal.click("#token-clear")
    expect(portal.locator("#token-area")).to_contain_text("Token cleared")
    portal.keyboard.press("Escape")
    portal.goto(portal.url.split("#")[0] + "#settings")
    portal.click("#account-secret-clear")
    portal.locator(".dialog").last.get_by_role("button", name="Clear").click()
    expect(portal.locator("#account-secret-state")).to_contain_text("No secret is set")
    before = len(receiver.deliveries(path))
    fire_test_event(portal, "patient.updated")
    deadline = time.time() + 10
    while len(receiver.deliveries(path)) == before and time.time() < deadline:
        time.sleep(0.1)
    headers = receiver.deliveries(path)[-1]["headers"]
    assert "x-webhook-token" not in headers and "x-webhook-secret" not in headers


def test_an_expired_or_altered_link_is_refused_and_the_session_ends(hookline, context):
    account_id, _ = new_account(hookline, "Expiring Clinic")
    short = portal_link(hookline, account_id, expires_in=3)
    portal = open_portal(context, short)
    time.sleep(3.5)
    # The session ended with the link: the next call sends the customer to sign in.
    portal.reload()
    expect(portal.locator("#signin")).to_be_visible()

    expired = context.new_page()
    expired.goto(short)
    expect(expired.locator("#signin-error")).to_contain_text("expired")
    assert "token" not in expired.url
    shot(expired, "portal-expired-link")

    valid = portal_link(hookline, account_id)
    altered = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    page = context.new_page()
    page.goto(altered)
    expect(page.locator("#signin-error")).to_contain_text("not valid")


def test_another_accounts_delivery_is_not_found_and_the_cookie_alone_is_not_enough(hookline, receiver, context):
    # Account B has a delivery.
    other_id, other_key = new_account(hookline, "Other Clinic")
    status, _ = hookline.call("POST", "/api/v3/webhook", {"type": "device.lowBattery", "url": receiver.base + "/other"}, key=other_key)
    assert status == 201
    status, published = hookline.call("POST", "/api/v3/test/webhook", {"type": "device.lowBattery"}, key=other_key)
    assert status == 202
    status, logs = hookline.call("GET", "/api/v3/webhook/logs", key=other_key)
    other_delivery = logs["content"][0]["id"]

    # Account A's portal session cannot read it, retry it, or see it in its log.
    account_id, _ = new_account(hookline, "Own Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    result = portal.evaluate("""async (id) => {
        const session = await (await fetch('/portal/session')).json();
        const headers = {'X-Hookline-Csrf': session.csrfToken};
        const get = await fetch('/api/v3/webhook/logs/' + id, {headers});
        const retry = await fetch('/api/v3/webhook/logs/' + id + '/retry', {method: 'POST', headers});
        const list = await (await fetch('/api/v3/webhook/logs', {headers})).json();
        const admin = await fetch('/api/v3/accounts', {headers});
        const cookieOnly = await fetch('/api/v3/webhook', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({type: 'patient.created', url: 'http://127.0.0.1:9/x'})});
        const wrongCsrf = await fetch('/api/v3/webhook', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-Hookline-Csrf': 'x' + session.csrfToken},
            body: JSON.stringify({type: 'patient.created', url: 'http://127.0.0.1:9/x'})});
        return {get: get.status, retry: retry.status, total: list.total, admin: admin.status,
                cookieOnly: cookieOnly.status, wrongCsrf: wrongCsrf.status};
    }""", other_delivery)
    assert result == {"get": 404, "retry": 404, "total": 0, "admin": 403, "cookieOnly": 401, "wrongCsrf": 403}, result
    # Nothing was created by the refused requests.
    status, webhooks = hookline.call("GET", "/api/v3/webhook", key=other_key)
    assert webhooks["total"] == 1


def test_a_script_in_a_payload_renders_as_text(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Script Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    create_webhook(portal, receiver.base + "/script", "supportTicket.event")
    evil = "<script>window.__payloadRan = 1</script><img src=x onerror=\"window.__payloadRan = 2\">"
    fire_test_event(portal, "supportTicket.event", {"note": evil})
    row = wait_for_row(portal, "delivered")
    row.get_by_role("button", name="Details").click()
    payload = portal.locator("#delivery-payload")
    # As text, JSON-escaped as the payload is (the quotes inside the string).
    expect(payload).to_contain_text(json.dumps(evil))
    assert portal.locator("#delivery-detail script").count() == 0
    assert portal.locator("#delivery-detail img").count() == 0
    assert portal.evaluate("window.__payloadRan") is None
    shot(portal, "portal-script-payload")


def test_sign_in_with_an_api_key_and_sign_out(hookline, context):
    account_id, key = new_account(hookline, "Key Clinic")
    page = context.new_page()
    page.goto(hookline.base + "/portal")
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#signin-key", "hlk_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    page.fill("#signin-key", key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("Key Clinic")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["hookline_portal"]["httpOnly"] is True
    assert cookies["hookline_portal"]["sameSite"] == "Lax"
    assert key not in cookies["hookline_portal"]["value"]
    # The empty state says what to do.
    page.goto(hookline.base + "/portal#webhooks")
    expect(page.locator("#webhook-list .empty")).to_contain_text("No webhooks yet")
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert "hookline_portal" not in {c["name"] for c in context.cookies()}
    page.reload()
    expect(page.locator("#signin")).to_be_visible()


def test_console_keys_event_types_and_publish(hookline, receiver, context):
    account_id, key = new_account(hookline, "Console Clinic")
    page = context.new_page()
    page.goto(hookline.base + "/console")
    page.fill("#signin-key", ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()

    # Event types: register one; it is listed.
    page.get_by_role("link", name="Event types").click()
    page.fill("#type-name", "survey.finished")
    page.fill("#type-description", "A patient finished a survey")
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#type-list")).to_contain_text("survey.finished")
    status, _ = hookline.call("POST", "/api/v3/webhook", {"type": "survey.finished", "url": receiver.base + "/console"}, key=key)
    assert status == 201

    # API keys: add one (shown once, and it works), revoke it (and it stops working).
    page.get_by_role("link", name="Accounts").click()
    page.locator(f'tr[data-id="{account_id}"]').get_by_role("button", name="API keys").click()
    first_key_id = hookline.call("GET", f"/api/v3/accounts/{account_id}")[1]["apiKeys"][0]["id"]
    page.click("#add-key")
    new_key = page.locator("#keys .secret-value").input_value()
    assert hookline.call("GET", "/api/v3/webhook", key=new_key)[0] == 200
    expect(page.locator("#keys li")).to_have_count(2)
    page.locator("#keys li").filter(has_not_text=first_key_id).get_by_role("button", name="Revoke").click()
    page.locator(".dialog").last.get_by_role("button", name="Revoke").click()
    expect(page.locator("#keys li")).to_have_count(1)
    expect(page.locator("#keys li")).to_contain_text(first_key_id)
    page.keyboard.press("Escape")
    assert hookline.call("GET", "/api/v3/webhook", key=new_key)[0] == 401
    assert hookline.call("GET", "/api/v3/webhook", key=key)[0] == 200

    # Publish a test event to the account.
    page.get_by_role("link", name="Publish a test event").click()
    page.select_option("#publish-account", account_id)
    page.select_option("#publish-type", "survey.finished")
    page.fill("#publish-payload", '{"surveyId": "s-1"}')
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#publish-result")).to_contain_text("1 delivery")
    shot(page, "console-publish")


def test_the_portal_fits_a_phone(hookline, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        account_id, _ = new_account(hookline, "Phone Clinic")
        page = open_portal(context, portal_link(hookline, account_id))
        expect(page.locator("#count-pending")).to_be_visible()
        # Nothing wider than the screen: no sideways scrolling of the page.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.goto(page.url.split("#")[0] + "#deliveries")
        expect(page.locator("#log-list .empty")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "portal-phone")
    finally:
        context.close()


def test_the_pages_forbid_inline_script_and_framing_by_others(hookline):
    import urllib.request
    with urllib.request.urlopen(hookline.base + "/portal") as response:
        csp = response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'self'" in csp
    assert "<script>" not in html


def test_edit_deactivate_and_delete_a_webhook_and_filter_the_log(hookline, receiver, context):
    account_id, key = new_account(hookline, "Editing Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    create_webhook(portal, receiver.base + "/edit-a", "patient.created")

    # Edit: a new URL and the `reading.*` wildcard from the picker (the catalog's namespaces).
    webhook = portal.locator(".webhook").first
    webhook.get_by_role("button", name="Edit").click()
    portal.fill("#wh-url", receiver.base + "/edit-b")
    portal.check('label.pick[data-name="reading.*"] input')
    portal.fill("#wh-description", "Readings and new patients")
    portal.fill("#wh-rate-limit", "25")
    shot(portal, "portal-webhook-form-rate-limit")
    portal.click("#wh-save")
    webhook = portal.locator(".webhook", has_text="/edit-b")
    expect(webhook).to_contain_text("reading.*")
    expect(webhook).to_contain_text("patient.created")
    expect(webhook).to_contain_text("Readings and new patients")
    expect(webhook).to_contain_text("at most 25 a second")
    shot(portal, "portal-webhook-rate-limited")
    # And removed again: the field left empty is no limit.
    webhook.get_by_role("button", name="Edit").click()
    expect(portal.locator("#wh-rate-limit")).to_have_value("25")
    portal.fill("#wh-rate-limit", "")
    portal.click("#wh-save")
    expect(portal.locator(".webhook", has_text="/edit-b")).not_to_contain_text("a second")
    # Ordered delivery: on, kept by the edit form, and off again.
    webhook.get_by_role("button", name="Edit").click()
    expect(portal.locator("#wh-ordered")).not_to_be_checked()
    portal.check("#wh-ordered")
    shot(portal, "portal-webhook-ordered")
    portal.click("#wh-save")
    expect(webhook.locator(".ordered")).to_contain_text("in order")
    webhook.get_by_role("button", name="Edit").click()
    expect(portal.locator("#wh-ordered")).to_be_checked()
    portal.uncheck("#wh-ordered")
    portal.click("#wh-save")
    expect(portal.locator(".webhook", has_text="/edit-b")).not_to_contain_text("in order")

    # Deactivated: a test event reaches no webhook; activated again: it does.
    webhook.get_by_role("button", name="Deactivate").click()
    expect(portal.locator(".webhook .badge")).to_have_text("inactive")
    portal.goto(portal.url.split("#")[0] + "#settings")
    portal.select_option("#test-type", "reading.ecg")
    portal.click("#test-send")
    expect(portal.locator("#test-result")).to_contain_text("no active webhook")
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    portal.locator(".webhook").first.get_by_role("button", name="Activate").click()
    expect(portal.locator(".webhook .badge")).to_have_text("active")
    fire_test_event(portal, "reading.ecg")
    fire_test_event(portal, "patient.created")
    # Both delivered before the receiver starts failing.
    deadline = time.time() + 10
    while len(receiver.deliveries("/edit-b")) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(receiver.deliveries("/edit-b")) == 2
    receiver.failing = True
    try:
        fire_test_event(portal, "reading.temperature")
        wait_for_row(portal, "failed")
    finally:
        receiver.failing = False

    # The log's filters: by status and by event type, and a time range that holds nothing.
    portal.goto(portal.url.split("#")[0] + "#deliveries")
    expect(portal.locator("table.logs tbody tr")).to_have_count(3)
    # The README's screenshot (docs/portal.png): without a passing toast.
    portal.evaluate("document.querySelector('#toast') && (document.querySelector('#toast').hidden = true)")
    shot(portal, "portal-deliveries-mixed")
    portal.select_option("#log-status", "failed")
    portal.get_by_role("button", name="Apply filters").click()
    expect(portal.locator("table.logs tbody tr")).to_have_count(1)
    expect(portal.locator("table.logs tbody tr")).to_contain_text("reading.temperature")
    portal.select_option("#log-status", "")
    portal.select_option("#log-type", "reading.ecg")
    portal.get_by_role("button", name="Apply filters").click()
    expect(portal.locator("table.logs tbody tr")).to_have_count(1)
    expect(portal.locator("table.logs tbody tr")).to_contain_text("reading.ecg")
    portal.select_option("#log-type", "")
    portal.fill("#log-endTimestamp", "2020-01-01T00:00:00")
    portal.get_by_role("button", name="Apply filters").click()
    expect(portal.locator("#log-list .empty")).to_contain_text("No deliveries match")
    shot(portal, "portal-filtered-log")

    # Delete asks first; Cancel keeps the webhook, Delete removes it.
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    portal.locator(".webhook").first.get_by_role("button", name="Delete").click()
    portal.locator(".dialog").last.get_by_role("button", name="Cancel").click()
    expect(portal.locator(".webhook")).to_have_count(1)
    portal.locator(".webhook").first.get_by_role("button", name="Delete").click()
    portal.locator(".dialog").last.get_by_role("button", name="Delete").click()
    expect(portal.locator("#webhook-list .empty")).to_contain_text("No webhooks yet")
    assert hookline.call("GET", "/api/v3/webhook", key=key)[1]["total"] == 0


def test_the_portal_is_usable_with_the_keyboard(hookline, receiver, context):
    account_id, _ = new_account(hookline, "Keyboard Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    portal.goto(portal.url.split("#")[0] + "#webhooks")
    new = portal.locator("#new-webhook")
    new.focus()
    portal.keyboard.press("Enter")
    expect(portal.locator("#wh-url")).to_be_focused()
    portal.keyboard.type(receiver.base + "/keys")
    portal.fill(".picker >> xpath=.. >> input[type=search]", "patient.created")
    portal.locator('label.pick[data-name="patient.created"] input').focus()
    portal.keyboard.press("Space")
    portal.locator("#wh-url").focus()
    portal.keyboard.press("Enter")
    expect(portal.locator(".webhook", has_text="/keys")).to_be_visible()
    # Escape closes a dialog.
    portal.locator(".webhook").first.get_by_role("button", name="Signing secret").focus()
    portal.keyboard.press("Enter")
    expect(portal.locator("dialog[open]")).to_have_count(1)
    portal.keyboard.press("Escape")
    expect(portal.locator("dialog[open]")).to_have_count(0)


def test_times_show_in_the_viewers_zone_with_utc_on_hover(hookline, browser):
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-US")
    try:
        account_id, _ = new_account(hookline, "Tokyo Clinic")
        page = open_portal(context, portal_link(hookline, account_id))
        stamp = page.locator("#who time")
        utc = stamp.get_attribute("datetime")
        title = stamp.get_attribute("title")
        assert title.endswith("(UTC)") and title.startswith(utc[:16]), (utc, title)
        # Tokyo is UTC+9: the shown hour is nine hours on.
        shown = stamp.inner_text()
        hour = (int(utc[11:13]) + 9) % 24
        assert f"{hour % 12 or 12:02d}:{utc[14:16]}" in shown or f"{hour % 12 or 12}:{utc[14:16]}" in shown, (utc, shown)
    finally:
        context.close()


def test_a_platform_embeds_the_portal_only_where_allowed(hookline, receiver, start_hookline, context):
    # The receiver's origin stands for the platform's dashboard: another origin than Hookline's.
    allowing = start_hookline({"HOOKLINE_FRAME_ANCESTORS": f"'self' {receiver.base}"})
    account_id, _ = new_account(allowing, "Embedded Clinic")
    receiver.page_html = (
        "<!doctype html><title>Platform dashboard</title><h1>Our dashboard</h1>"
        f'<iframe id="portal" src="{portal_link(allowing, account_id)}" width="1200" height="700"></iframe>'
    )
    page = context.new_page()
    page.goto(receiver.base + "/dashboard")
    framed = page.frame_locator("#portal")
    expect(framed.locator("#who")).to_contain_text("Embedded Clinic")
    expect(framed.locator("#count-failed")).to_be_visible()
    shot(page, "portal-embedded")

    # The default (`frame-ancestors 'self'`) refuses the same embedding.
    other_id, _ = new_account(hookline, "Not Embedded Clinic")
    receiver.page_html = f'<!doctype html><iframe id="portal" src="{portal_link(hookline, other_id)}"></iframe>'
    page.goto(receiver.base + "/dashboard")
    page.wait_for_timeout(1500)
    child = page.frames[1] if len(page.frames) > 1 else None
    assert child is not None
    assert child.locator("#app").count() == 0


def test_the_counts_refresh_by_themselves(hookline, receiver, context):
    account_id, key = new_account(hookline, "Live Clinic")
    portal = open_portal(context, portal_link(hookline, account_id))
    expect(portal.locator("#count-delivered")).to_have_text("0")
    status, _ = hookline.call("POST", "/api/v3/webhook", {"type": "patient.created", "url": receiver.base + "/live"}, key=key)
    assert status == 201
    status, _ = hookline.call("POST", "/api/v3/events", {"accountId": account_id, "type": "patient.created", "payload": {"id": 1}})
    assert status == 202
    # No click: the overview polls.
    expect(portal.locator("#count-delivered")).to_have_text("1", timeout=12_000)
