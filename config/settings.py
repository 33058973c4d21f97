"""Baton settings, read from the environment.

With no environment at all Baton runs on the embedded default: a SQLite file
database (IMMEDIATE transactions, WAL) under ``var/`` and an in-process worker.
Production sets ``DATABASE_URL`` (PostgreSQL, as the application's own role),
``CELERY_BROKER_URL`` (Redis), ``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""
from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("BATON_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="baton-embedded-insecure-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "bpmn",
    "processes",
    "approvals",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.RejectNulMiddleware",  # after auth: its 400 page shows the signed-in nav
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "approvals.context_processors.nav",
            ],
        },
    },
]


def _database(url: str | None) -> dict:
    """Build one Django database entry; SQLite gets IMMEDIATE transactions and WAL.

    With Django's default DEFERRED transactions, 20 concurrent completions on
    SQLite gave "database is locked" instead of 1 success and 19 conflicts.
    """
    if not url:
        url = f"sqlite:///{VAR_DIR / 'baton.sqlite3'}"
    db = environ.Env.db_url_config(url)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            # busy timeout = the lock timeout: a writer held up longer answers "busy, retry".
            "timeout": env.int("BATON_LOCK_TIMEOUT_MS", default=3000) / 1000,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        db["TEST"] = {"NAME": str(VAR_DIR / "test_baton.sqlite3")}
    else:
        # lock_timeout at connect time: a command waiting on a locked instance
        # answers "busy, retry" instead of hanging a web worker (no per-command SET).
        db.setdefault("OPTIONS", {})["options"] = f"-c lock_timeout={env.int('BATON_LOCK_TIMEOUT_MS', default=3000)}"
        db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
        db["CONN_HEALTH_CHECKS"] = True
        if env.str("BATON_TEST_DB_NAME", default=""):  # several test runs side by side on one server
            db["TEST"] = {"NAME": env.str("BATON_TEST_DB_NAME")}
    return db


DATABASES = {"default": _database(env.str("DATABASE_URL", default=None))}
# Role that owns the schema (runs migrations); the application itself connects
# as a role that is neither owner nor superuser so the audit trigger binds it.
DATABASE_OWNER_URL = env.str("DATABASE_OWNER_URL", default="")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# Seconds a command waits for an instance lock before answering "conflict, retry".
BATON_LOCK_TIMEOUT_MS = env.int("BATON_LOCK_TIMEOUT_MS", default=3000)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve app static files straight from their apps (no collectstatic needed for `make run`).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# REST API (api/): deny by default; token first so anonymous callers get 401 with
# a WWW-Authenticate header; session auth enforces CSRF on unsafe methods.
REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Baton API",
    "DESCRIPTION": "Human-in-the-loop BPMN engine. Every error body is {code, message, details}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The enum hook is drf-spectacular's default; ours documents 400 (malformed body) and 404 (no such page).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.errors.document_common_errors"],
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "processes.models.InstanceStatus",
        "TaskStatusEnum": "processes.models.HumanTaskStatus",
        "IncidentStatusEnum": "processes.models.IncidentStatus",
    },
}
# An unfinished Idempotency-Key record older than this (its request crashed) may be taken over.
BATON_IDEMPOTENCY_STALE_SECONDS = env.int("BATON_IDEMPOTENCY_STALE_SECONDS", default=300)

# BPMN upload limits: checked before / while parsing.
BATON_MAX_UPLOAD_BYTES = env.int("BATON_MAX_UPLOAD_BYTES", default=5 * 1024 * 1024)
BATON_MAX_XML_ELEMENTS = env.int("BATON_MAX_XML_ELEMENTS", default=20_000)

# Sandbox limits for BPMN scripts (seconds, bytes).
BATON_SCRIPT_CPU_SECONDS = env.int("BATON_SCRIPT_CPU_SECONDS", default=2)
BATON_SCRIPT_WALL_SECONDS = env.float("BATON_SCRIPT_WALL_SECONDS", default=5.0)
BATON_SCRIPT_MEMORY_BYTES = env.int("BATON_SCRIPT_MEMORY_BYTES", default=512 * 1024 * 1024)

# Jobs: leases, timeouts, retries (per task overridable in the diagram).
BATON_JOB_LEASE_SECONDS = env.float("BATON_JOB_LEASE_SECONDS", default=120)
BATON_JOB_TIMEOUT_SECONDS = env.float("BATON_JOB_TIMEOUT_SECONDS", default=30)
BATON_JOB_MAX_ATTEMPTS = env.int("BATON_JOB_MAX_ATTEMPTS", default=3)
BATON_JOB_BACKOFF_SECONDS = env.float("BATON_JOB_BACKOFF_SECONDS", default=5)
BATON_JOB_BACKOFF_MAX_SECONDS = env.float("BATON_JOB_BACKOFF_MAX_SECONDS", default=3600)
BATON_SWEEP_SECONDS = env.float("BATON_SWEEP_SECONDS", default=5)
BATON_WEBHOOK_MAX_ATTEMPTS = env.int("BATON_WEBHOOK_MAX_ATTEMPTS", default=8)
BATON_WEBHOOK_TIMEOUT_SECONDS = env.float("BATON_WEBHOOK_TIMEOUT_SECONDS", default=10)
BATON_WEBHOOK_CACHE_SECONDS = env.float("BATON_WEBHOOK_CACHE_SECONDS", default=5)  # "no subscription" cached
BATON_CONNECTOR_MODULES = env.list("BATON_CONNECTOR_MODULES", default=[])
BATON_SECRETS: dict[str, str] = {}

# E-mail (notifications and the email.send connector), sent through the job table.
# Embedded default: one .eml file per message under var/mail. EMAIL_URL (django-environ:
# smtp://user:pass@host:587, smtp+tls://..., consolemail://, filemail:///path) or
# EMAIL_BACKEND (a dotted class path) override it; EMAIL_BACKEND wins when both are set.
EMAIL_FILE_PATH = VAR_DIR / "mail"
_EMAIL = env.email_url("EMAIL_URL") if env.str("EMAIL_URL", default="") else {
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}
globals().update(_EMAIL)  # EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_USE_TLS, ... from the URL
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=_EMAIL["EMAIL_BACKEND"])
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Baton <baton@localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Links in e-mails point here; notification e-mails are retried up to this many times.
BATON_BASE_URL = env.str("BATON_BASE_URL", default="http://localhost:8000")
BATON_EMAIL_MAX_ATTEMPTS = env.int("BATON_EMAIL_MAX_ATTEMPTS", default=6)
# A reminder goes out once per (task, person) when the due date is this close (ISO-8601 or seconds).
BATON_REMINDER_BEFORE = env.str("BATON_REMINDER_BEFORE", default="P1D")
# Task attachments: stored in the default storage (MEDIA_ROOT), outside task data; larger files are refused.
BATON_ATTACHMENT_MAX_BYTES = env.int("BATON_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
MEDIA_ROOT = env.path("BATON_MEDIA_ROOT", default=str(VAR_DIR / "files"))

# Celery: at-least-once with idempotent effects (see docs/operations.md).
# Without a broker the embedded in-process worker runs jobs (make run).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
BATON_EMBEDDED_WORKER = not CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Visibility timeout above the longest job (lease); short socket timeouts so a
# broker outage never holds a web request.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(max(3600, BATON_JOB_LEASE_SECONDS * 2)),
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
    "max_retries": 0,
}
# /metrics requires "Authorization: Bearer <token>" when set (docs/operations.md).
BATON_METRICS_TOKEN = env.str("BATON_METRICS_TOKEN", default="")
CELERY_BEAT_SCHEDULE = {
    "baton-sweep": {"task": "baton.sweep", "schedule": BATON_SWEEP_SECONDS},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": env.str("LOG_FORMAT", default="plain")}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # SpiffWorkflow logs every task state change at INFO: noisy and costly on the hot path.
    "loggers": {"spiff": {"level": env.str("SPIFF_LOG_LEVEL", default="WARNING")}},
}

if not DEBUG and env.bool("BATON_SECURE", default=False):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox"
LOGOUT_REDIRECT_URL = "login"
