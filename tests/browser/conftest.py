"""Browser tests: Playwright's sync API drives Debian's headless Chromium against pytest-django's live server.

Chromium is the system one (``/usr/bin/chromium``); ``playwright install`` is never run. When Playwright or
Chromium is missing the tests skip with the reason, or fail when ``BATON_REQUIRE_SERVICES=1`` (CI). On a
failure every page still open is saved as a full-page screenshot to ``test-artifacts/<test>-<n>.png``.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

CHROMIUM = os.environ.get("BATON_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
# the demo's people and groups (processes/demo.py); each password is "<name>-demo"
PEOPLE = {
    "alice": ("Requesters",), "mike": ("Managers", "Approvers", "Board"), "fiona": ("Finance", "Board"),
    "lena": ("Legal", "Board"), "oscar": ("Operators", "operators"), "dana": ("designers",),
    "audrey": ("auditors",),
}


def _unavailable(reason: str) -> None:
    message = f"browser tests need {reason}"
    if os.environ.get("BATON_REQUIRE_SERVICES") == "1":  # CI: a missing browser is a failure
        pytest.fail(message)
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (the sync API's event loop lives only as long as the module)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API keeps an event loop in this thread
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test-only: hashing is slow


@pytest.fixture
def people(transactional_db: None, _fast_passwords: None) -> dict[str, Any]:
    """The demo users with their demo passwords, in the demo's groups."""
    User = get_user_model()
    made = {}
    for name, groups in PEOPLE.items():
        user = User.objects.create_user(name, password=f"{name}-demo", email=f"{name}@example.com")
        user.groups.add(*[Group.objects.get_or_create(name=g)[0] for g in groups])
        made[name] = user
    return made


@pytest.fixture
def new_page(chromium: Any, live_server: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Return ``new_page(user=None, **context_options)``: a page in its own browser context (own cookies),
    logged in through the login form when ``user`` is given. Screenshots every page if the test failed."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def _new_page(user: str | None = None, **options: Any) -> Any:
        context = chromium.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        if user:
            login(page, user)
        return page

    yield _new_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for n, page in enumerate(pages, 1):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"screenshot {name}-{n} failed: {exc}")
    for context in contexts:
        context.close()


def login(page: Any, username: str) -> None:
    """Log in through the real login form and land on the inbox."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))
