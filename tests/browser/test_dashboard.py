"""The admin dashboard in Chromium against the real API: every page, searches, pricing, runs, retries, CORS."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from browser_stack import REVOCATION_WINDOW_S, SECOND_FEED, Console, Stack, open_context, screenshot
from playwright.sync_api import Browser, Locator, Page, Route, expect

from opus.api.keys import create_key, revoke_key

pytestmark = pytest.mark.e2e
RUN_TIMEOUT_MS = 60_000


def dashboard_url(stack: Stack) -> str:
    return f"{stack.api_url}/dashboard/"


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page: Page, stack: Stack, key: str | None = None) -> None:
    sign_in(page, dashboard_url(stack), key or stack.admin_key)
    expect(page.locator("#sign-out")).to_be_visible()


def go(page: Page, hash_path: str) -> None:
    page.evaluate("hash => { location.hash = hash; }", hash_path)


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{stack.api_url}/api/v2{path}", headers={"X-API-Key": stack.admin_key},
                             timeout=10, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def wait_for_run(stack: Stack, run_id: str, statuses: set[str], timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run: dict[str, Any] = api(stack, "GET", f"/analytics/runs/{run_id}")
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {statuses}")


def money(value: Decimal) -> str:
    return f"${value:,.2f}"


def test_sign_in_shows_the_overview_with_real_data_and_sign_out_ends_the_session(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    expect(page.locator("#active-stones .figure-value")).to_have_text("1,500")
    expect(page.get_by_role("table", name=re.compile("Active stones by feed"))).to_contain_text("nivoda")
    expect(page.locator(".watermark")).to_contain_text("UTC")
    expect(page.locator("#failed-runs .figure-value")).to_have_text("0")
    expect(page.locator("#recent-failed-runs")).to_have_text("Failed runs: none.")
    latest = page.get_by_role("table", name=re.compile("five latest runs"))
    expect(latest).to_contain_text("completed")
    expect(latest.locator("td[data-label='Feed']").first).to_have_text("nivoda")
    expect(page.locator("#chart-duration canvas")).to_be_visible()
    expect(page.locator("#chart-stones canvas")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("admin")
    screenshot(page, "overview")

    page.locator("#sign-out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0, "the key is forgotten"
    go(page, "#/runs")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_bad_or_revoked_key_is_refused(page: Page, stack: Stack, console: Console) -> None:
    console.expect_status(401)
    sign_in(page, dashboard_url(stack), "opus_notakey")
    expect(page.locator("#sign-in-status")).to_contain_text("The key was refused: invalid API key")
    screenshot(page, "sign-in-refused")

    doomed = create_key(stack.db, "browser-doomed", "admin")
    signed_in(page, stack, doomed)
    assert revoke_key(stack.db, _prefix(stack, "browser-doomed"))
    time.sleep(REVOCATION_WINDOW_S + 0.5)  # a revocation takes effect within API_KEY_CACHE_S
    go(page, "#/runs")
    expect(page.locator(".notice-error")).to_contain_text("revoked")
    expect(page.get_by_label("API key")).to_be_visible()
    sign_in(page, dashboard_url(stack), doomed)
    expect(page.locator("#sign-in-status")).to_contain_text("revoked")


def _prefix(stack: Stack, name: str) -> str:
    with stack.db.connection() as conn:
        row = conn.execute("SELECT prefix FROM api_keys WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return str(row["prefix"])


def test_every_page_shows_real_data(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    run_id = stack.first_run["run_id"]
    pages = {
        "runs": ("#/runs", lambda: expect(page.locator(f"tr[data-run='{run_id}']")).to_contain_text("completed")),
        "run": (f"#/runs/{run_id}", lambda: expect(page.locator("#run-status")).to_have_text("completed")),
        "consolidation": ("#/consolidation",
                          lambda: expect(page.locator("#latest-consolidated")).to_have_text("1,500")),
        "retry": ("#/retry", lambda: expect(page.locator("main")).to_contain_text("No failed runs")),
        "diamonds": ("#/diamonds", lambda: expect(page.locator("#diamond-table tbody tr")).to_have_count(20)),
        "suppliers": ("#/suppliers", lambda: expect(page.locator("#supplier-chart canvas")).to_be_visible()),
        "pricing": ("#/pricing", lambda: expect(page.locator("tr[data-priority='1000000']")).to_contain_text("1.2")),
        "events": ("#/events", lambda: expect(page.locator("#alerts")).to_contain_text("No alerts")),
        "docs": ("#/docs", lambda: swagger_ui_renders(page, stack)),
    }
    for name, (hash_path, check) in pages.items():
        go(page, hash_path)
        check()
        expect(page.locator(".state-error")).to_have_count(0)
        screenshot(page, name)
    run = api(stack, "GET", f"/analytics/runs/{run_id}")
    expect(page.locator("body")).not_to_contain_text("undefined")
    go(page, f"#/runs/{run_id}")
    expect(page.get_by_role("table", name="Partitions").locator("tbody tr")).to_have_count(len(run["partitions"]))

    go(page, "#/diamonds")
    expect(page.get_by_role("columnheader", name="Photo")).to_have_count(1)
    first = page.locator("#diamond-table tbody tr").first
    first.get_by_role("link").click()
    expect(page.locator("#certificate-link")).to_be_visible()
    expect(page.locator("img.photo")).to_be_visible()
    screenshot(page, "diamond")


def swagger_ui_renders(page: Page, stack: Stack) -> None:
    """The Docs page's embed shows Swagger UI's operations: its scripts come from the API, not from a CDN."""
    expect(page.locator("#swagger-link")).to_have_attribute("href", f"{stack.api_url}/api/v2/docs")
    page.get_by_role("button", name="Show the documentation here").click()
    docs = page.frame_locator("iframe[title^='Opus API documentation']")
    # Swagger UI parses a 1.5 MB script and lays out every route: seconds on a loaded machine.
    expect(docs.locator(".opblock").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(docs.locator(".opblock-summary-path", has_text="/api/v2/operations/feeds")).to_have_count(1)


def test_pages_fit_a_phone_and_work_from_the_keyboard(browser: Browser, stack: Stack, console: Console) -> None:
    context = open_context(browser, console, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(dashboard_url(stack))
        page.keyboard.type(stack.read_key)  # the key field has the focus
        page.keyboard.press("Enter")
        expect(page.locator("#active-stones")).to_be_visible()
        for hash_path in ("#/overview", "#/runs", "#/diamonds", "#/pricing"):
            go(page, hash_path)
            expect(page.locator(".state-loading")).to_have_count(0)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{hash_path} is {overflow}px wider than the phone"
        screenshot(page, "phone-pricing")
        go(page, "#/diamonds")
        expect(page.locator("#diamond-table")).to_be_visible()
        screenshot(page, "phone-diamonds")
    finally:
        context.close()
    assert not console.problems, "\n".join(console.problems)


def test_pages_say_when_the_api_is_down_busy_or_failing(page: Page, stack: Stack, console: Console) -> None:
    console.expect_status(429, 503)
    console.expect_unreachable()
    signed_in(page, stack)
    expect(page.locator("#active-stones")).to_be_visible()
    answer: dict[str, Any] = {"mode": "down"}

    def summary(route: Route) -> None:
        if answer["mode"] == "down":
            route.abort("failed")
        elif answer["mode"] == "busy":
            route.fulfill(status=429, headers={"Retry-After": "7"}, json={
                "error": {"code": "rate_limited", "message": "too many", "details": None}})
        elif answer["mode"] == "failing":
            route.fulfill(status=503, json={"error": {"code": "unavailable", "message": "database down",
                                                      "details": None}})
        else:
            route.fallback()

    page.route("**/api/v2/analytics/summary", summary)
    retry = page.get_by_role("button", name="Try again")
    go(page, "#/runs")
    go(page, "#/overview")
    expect(page.get_by_role("alert")).to_contain_text("The API cannot be reached")
    screenshot(page, "overview-api-down")
    answer["mode"] = "busy"
    retry.click()
    expect(page.get_by_role("alert")).to_contain_text("Too many requests for this key. Try again in 7 s.")
    answer["mode"] = "failing"
    retry.click()
    expect(page.get_by_role("alert")).to_contain_text("The API had a problem (503): database down")
    answer["mode"] = "up"
    retry.click()
    expect(page.locator("#active-stones .figure-value")).to_have_text("1,500")


def test_a_read_key_sees_no_admin_or_trade_controls(page: Page, stack: Stack) -> None:
    signed_in(page, stack, stack.read_key)
    go(page, "#/runs")
    expect(page.locator("tr[data-run]").first).to_be_visible()
    expect(page.get_by_role("button", name="Start run")).to_have_count(0)
    go(page, "#/pricing")
    expect(page.locator("tr[data-priority]").first).to_be_visible()
    expect(page.locator("#rule-form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    go(page, "#/consolidation")
    expect(page.locator("#pending-rows")).to_be_visible()
    expect(page.get_by_role("button", name="Consolidate")).to_have_count(0)
    stone = api(stack, "GET", "/diamonds", params={"limit": 1})["items"][0]
    go(page, f"#/diamonds/{stone['id']}")
    expect(page.locator("#stone-price")).to_be_visible()
    expect(page.get_by_role("button", name="Hold")).to_have_count(0)


def test_a_trade_key_holds_releases_and_buys_a_stone(page: Page, stack: Stack) -> None:
    signed_in(page, stack, stack.trade_key)
    query = {"limit": 1, "availability": "AVAILABLE", "sort": "carats"}
    stone = api(stack, "GET", "/diamonds", params=query)["items"][0]
    go(page, f"#/diamonds/{stone['id']}")
    page.get_by_role("button", name="Hold", exact=True).click()
    expect(page.locator("#diamond-messages")).to_contain_text("Hold placed")
    expect(page.get_by_role("button", name="Cancel hold")).to_be_visible()
    page.get_by_role("button", name="Cancel hold").click()
    expect(page.locator("#diamond-messages")).to_contain_text("Hold cancelled")
    page.get_by_role("button", name="Purchase").click()
    with page.expect_request(lambda r: r.url.endswith(f"/diamonds/{stone['id']}/purchase")) as sent:
        page.get_by_role("dialog").get_by_role("button", name="Buy").click()
    expect(page.locator("#diamond-messages")).to_contain_text("Purchased: order")
    expect(page.get_by_role("button", name="Purchase")).to_have_count(0)
    with stack.db.connection() as conn:
        bought = conn.execute("SELECT idempotency_key FROM purchase_history WHERE diamond_id = %s",
                              (stone["id"],)).fetchall()
    assert len(bought) == 1, "one order"
    # Stored per credential ("key:<id>|<key>"), so that two clients' keys cannot collide.
    assert bought[0]["idempotency_key"].endswith("|" + sent.value.headers["idempotency-key"])

    theirs = api(stack, "GET", "/diamonds", params=query)["items"][0]
    api(stack, "POST", f"/diamonds/{theirs['id']}/hold")  # held by the admin key: another client
    go(page, f"#/diamonds/{theirs['id']}")
    expect(page.locator("#held-by-another")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel hold")).to_have_count(0)
    expect(page.get_by_role("button", name="Purchase")).to_have_count(0)
    api(stack, "DELETE", f"/diamonds/{theirs['id']}/hold")


def visible_ids(page: Page) -> list[str]:
    expect(page.locator(".state-loading")).to_have_count(0)
    return [str(i) for i in page.locator("#diamond-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")]


def test_a_filtered_search_pages_forward_and_back(page: Page, stack: Stack) -> None:
    signed_in(page, stack)
    go(page, "#/diamonds")
    form = page.locator("#search-form")
    form.get_by_label("Shapes").fill("round")
    form.get_by_label("Natural or lab-grown").select_option("false")
    form.get_by_label("Sort by").select_option("carats")
    form.get_by_label("Per page").select_option("10")
    form.get_by_label("Exact total").check()
    form.get_by_role("button", name="Search").click()
    expect(page.locator("#result-summary")).to_contain_text("Page 1")
    expected = api(stack, "GET", "/diamonds", params={"shapes": "ROUND", "lab_grown": "false", "sort": "carats",
                                                      "limit": 10, "count": "exact"})
    assert expected["total"] > 30, "enough stones for three pages"
    expect(page.locator("#result-summary")).to_contain_text(f"{expected['total']:,} stones")
    first = visible_ids(page)
    assert first == [str(d["id"]) for d in expected["items"]]
    page.locator("#page-next").click()
    expect(page.locator("#result-summary")).to_contain_text("Page 2")
    second = visible_ids(page)
    page.locator("#page-next").click()
    expect(page.locator("#result-summary")).to_contain_text("Page 3")
    third = visible_ids(page)
    assert len({*first, *second, *third}) == 30, "three pages, no stone twice"
    kinds = page.locator("#diamond-table tbody td[data-label='Kind']").all_inner_texts()
    shapes = page.locator("#diamond-table tbody td[data-label='Shape']").all_inner_texts()
    assert set(kinds) == {"natural"}
    assert set(shapes) == {"ROUND"}
    screenshot(page, "diamonds-page-3")
    page.locator("#page-prev").click()
    expect(page.locator("#result-summary")).to_contain_text("Page 2")
    assert visible_ids(page) == second
    page.locator("#page-prev").click()
    expect(page.locator("#result-summary")).to_contain_text("Page 1")
    assert visible_ids(page) == first
    expect(page.locator("#page-prev")).to_be_disabled()

    page.locator("button.sort[data-sort='carats']").click()  # ascending -> descending, from the first page
    expect(page.locator("th[aria-sort='descending']")).to_contain_text("Carats")
    carats = [Decimal(c) for c in page.locator("#diamond-table tbody td[data-label='Carats']").all_inner_texts()]
    assert carats == sorted(carats, reverse=True)
    assert carats[0] >= Decimal(str(expected["items"][-1]["carats"]))


def repriced(change: str) -> re.Pattern[str]:
    """The notice after a rule change, which must say that some stones were repriced."""
    return re.compile(rf"{change}; [1-9][\d,]* stones repriced")


def field_error(page: Page, control: Locator) -> Locator:
    return page.locator(f"#{control.get_attribute('id')}-error")


def stone_price(page: Page, stone_id: int) -> str:
    go(page, f"#/diamonds/{stone_id}")
    expect(page.locator(".state-loading")).to_have_count(0)
    return page.locator("#stone-price .figure-value").inner_text()


def test_a_pricing_rule_is_created_edited_and_deleted_and_prices_follow(
    page: Page, stack: Stack, console: Console
) -> None:
    console.expect_status(409, 422)
    stone = api(stack, "GET", "/diamonds", params={"limit": 1, "shapes": "OVAL", "lab_grown": "false"})["items"][0]
    feed_price = Decimal(str(stone["feed_price"]))
    signed_in(page, stack)
    original = stone_price(page, stone["id"])
    assert original == money(Decimal(str(stone["price"])))

    go(page, "#/pricing")
    form = page.locator("#rule-form")
    form.get_by_label("Priority").fill("1000000")
    form.get_by_label("Carats from").fill("2")
    form.get_by_label("Carats below").fill("1")
    form.get_by_role("button", name="Create rule").click()
    expect(field_error(page, form.get_by_label("Markup ratio"))).to_contain_text("required")
    form.get_by_label("Markup ratio").fill("2")
    form.get_by_role("button", name="Create rule").click()
    expect(field_error(page, form.get_by_label("Carats from"))).to_contain_text("carat_min must be less than carat_max")
    screenshot(page, "pricing-validation")
    form.get_by_label("Carats from").fill("")
    form.get_by_label("Carats below").fill("")
    form.get_by_role("button", name="Create rule").click()
    expect(form.get_by_label("Priority")).to_have_attribute("aria-invalid", "true")
    expect(field_error(page, form.get_by_label("Priority"))).to_contain_text("already has this priority")
    form.get_by_label("Priority").fill("5")
    form.get_by_label("Name").fill("natural ovals")
    form.get_by_label("Shapes").fill("oval")
    form.get_by_label("Natural or lab-grown").select_option("false")
    form.get_by_role("button", name="Create rule").click()
    expect(page.locator("#pricing-messages")).to_contain_text(repriced("Rule 5 created"))
    expect(page.locator("tr[data-priority='5']")).to_contain_text("OVAL")
    assert stone_price(page, stone["id"]) == money(feed_price * 2)

    go(page, "#/pricing")
    page.get_by_role("button", name="Edit rule 5").click()
    form.get_by_label("Markup ratio").fill("3")
    form.get_by_role("button", name="Save rule").click()
    expect(page.locator("#pricing-messages")).to_contain_text(repriced("Rule 5 saved"))
    assert stone_price(page, stone["id"]) == money(feed_price * 3)

    go(page, "#/pricing")
    page.get_by_role("button", name="Delete rule 5").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete rule").click()
    expect(page.locator("#pricing-messages")).to_contain_text(repriced("Rule deleted"))
    expect(page.locator("tr[data-priority='5']")).to_have_count(0)
    assert stone_price(page, stone["id"]) == original


# Records every text the run page's status and refresh line show, so that a test can tell that the page went
# through an active state, however briefly, before the run completed.
RECORD_RUN_STATES = """
window.runStates = [];
new MutationObserver(() => {
  for (const id of ["run-status", "run-refreshing"]) {
    const text = document.getElementById(id)?.textContent;
    if (text && window.runStates[window.runStates.length - 1] !== text) window.runStates.push(text);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""
ACTIVE_STATES = {"planning", "running", "consolidating", "The run is active: refreshing every second."}


def test_a_run_started_from_the_runs_page_is_watched_to_completion(page: Page, stack: Stack) -> None:
    page.add_init_script(RECORD_RUN_STATES)
    signed_in(page, stack)
    go(page, "#/runs")
    expect(page.get_by_label("Feed", exact=True).first).to_have_value("nivoda")  # the first enabled feed
    page.get_by_label("Run type").select_option("incremental")
    # An incremental run of an unchanged feed ends within a second; each feed request answered 2 s late keeps
    # it active long enough for the page to show it so.
    stack.sandbox.inventory.faults.configure(latency_ms=2_000)
    try:
        page.get_by_role("button", name="Start run").click()
        expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
        expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    finally:
        stack.sandbox.inventory.faults.reset()
    expect(page.locator("#run-refreshing")).to_have_text("")
    expect(page.locator("#run-summary")).to_have_text(re.compile(r"^Status completed: (\d+) of \1 partitions done"))
    seen: list[str] = page.evaluate("window.runStates")
    assert ACTIVE_STATES & set(seen[:seen.index("completed")]), f"no active state before completion: {seen}"
    assert page.locator("main [aria-live]").count() == 0, "only the status line is live (role=status)"
    screenshot(page, "run-completed")
    run_id = page.url.rsplit("/", 1)[1]
    assert api(stack, "GET", f"/analytics/runs/{run_id}")["trigger"] == "api"


def test_a_failed_run_is_retried_from_the_worker_retry_page(page: Page, stack: Stack) -> None:
    faults = stack.sandbox.inventory.faults
    started = api(stack, "POST", "/triggers/run", json={"type": "full"})
    faults.configure(rate_500=1.0)  # planned already; every page from now on fails
    try:
        failed = wait_for_run(stack, started["run_id"], {"failed", "completed"})
    finally:
        faults.reset()
    assert failed["status"] == "failed", "the feed failed every page"
    signed_in(page, stack)
    go(page, "#/retry")
    card = page.locator(f"section[data-run='{started['run_id']}']")
    expect(card).to_contain_text("feed kept failing")
    screenshot(page, "worker-retry")
    go(page, f"#/runs/{started['run_id']}")
    partitions = page.get_by_role("table", name="Partitions")
    expect(partitions.get_by_role("columnheader", name="Attempts")).to_be_visible()
    expect(partitions).to_contain_text("feed kept failing")
    go(page, f"#/events?run={started['run_id']}")
    expect(page.locator("#alerts tbody tr").first).to_be_visible()
    screenshot(page, "events-failed-run")
    go(page, "#/retry")
    page.locator(f"section[data-run='{started['run_id']}']").get_by_role(
        "button", name="Retry failed partitions").click()
    expect(page).to_have_url(re.compile(f"#/runs/{started['run_id']}$"))
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    assert api(stack, "GET", f"/analytics/runs/{started['run_id']}")["consolidated"] >= 0


def test_the_dashboard_on_another_origin_works_through_cors(page: Page, stack: Stack, console: Console) -> None:
    origin = stack.cross_origin_url
    preflight = httpx.options(f"{stack.api_url}/api/v2/diamonds", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    without_key = httpx.get(f"{stack.api_url}/api/v2/diamonds", headers={"Origin": origin})
    assert without_key.status_code == 401, "a real request still needs credentials"
    assert without_key.headers["access-control-allow-origin"] == origin
    stranger = httpx.options(f"{stack.api_url}/api/v2/diamonds", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in stranger.headers

    console.expect_status(401)
    sign_in(page, f"{origin}/", "opus_notakey")
    expect(page.locator("#sign-in-status")).to_contain_text("The key was refused")
    sign_in(page, f"{origin}/", stack.admin_key)
    expect(page.locator("#active-stones .figure-value")).to_have_text("1,500")
    go(page, "#/diamonds")
    expect(page.locator("#diamond-table tbody tr")).to_have_count(20)
    screenshot(page, "cross-origin-diamonds")


def test_a_run_of_the_second_feed_is_started_and_shown_by_feed(page: Page, stack: Stack) -> None:
    # Last in the module: it adds the second feed's stones to the catalogue, which earlier tests count.
    signed_in(page, stack)
    go(page, "#/runs")
    start = page.get_by_role("form", name="Start a run")
    start.get_by_label("Feed").select_option(SECOND_FEED)
    start.get_by_label("Run type").select_option("full")
    with page.expect_request(lambda r: r.url.endswith("/triggers/run")) as sent:
        start.get_by_role("button", name="Start run").click()
    assert sent.value.post_data_json == {"type": "full", "feed": SECOND_FEED}
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    run_id = page.url.rsplit("/", 1)[1]
    run = api(stack, "GET", f"/analytics/runs/{run_id}")
    assert (run["feed"], run["consolidated"] > 0) == (SECOND_FEED, True)

    go(page, "#/runs")
    page.get_by_role("form", name="Filter runs").get_by_label("Feed").select_option(SECOND_FEED)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tr[data-run]")
    expect(rows).to_have_count(1)
    expect(rows.locator("td[data-label='Feed']")).to_have_text(SECOND_FEED)
    screenshot(page, "runs-second-feed")
    go(page, "#/consolidation")
    expect(page.locator("#latest-feed")).to_have_text(SECOND_FEED)
    expect(page.locator(f"tr[data-feed='{SECOND_FEED}']")).to_contain_text(f"{run['consolidated']:,}")
    expect(page.locator("tr[data-feed='nivoda']")).to_be_visible()
    go(page, "#/overview")
    latest = page.get_by_role("table", name=re.compile("five latest runs"))
    expect(latest.locator("td[data-label='Feed']").first).to_have_text(SECOND_FEED)
    expect(page.locator("#chart-duration .u-legend")).to_contain_text(SECOND_FEED)
    screenshot(page, "overview-two-feeds")
