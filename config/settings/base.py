"""Settings shared by every environment.

Everything comes from the environment (see `.env.example`). With nothing set, Coffer runs on
embedded defaults: SQLite, the local-memory cache and kombu's filesystem broker, so the platform
starts on a machine that has only Python. With DATABASE_URL / REDIS_URL / CELERY_BROKER_URL set,
the same code runs on PostgreSQL (psycopg 3), Redis (django-redis) and a real broker.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from kombu import Queue as _Queue

from config.env import BASE_DIR, env

DEBUG = env.bool("DEBUG", default=False)
# The default key is only good for local runs; production settings refuse it.
INSECURE_DEFAULT_SECRET_KEY = "django-insecure-coffer-local-development-key-do-not-use"
SECRET_KEY = env("SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
VAR_DIR = Path(env("COFFER_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "config.admin.CofferAdminConfig",  # django.contrib.admin with Coffer's audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rest_framework_simplejwt.token_blacklist",  # refresh-token rotation (accounts.identity.tokens)
    "core",
    "accounts",
    "compliance",
    "ledger",
    "wallets",
    "payorders",
    "config",  # the project's own commands (seed_demo): above every app in the import layers
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.ApiErrorEnvelopeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.query_params.DetailQueryParamsMiddleware",
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
                "core.context_processors.livemode",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite by default; PostgreSQL when DATABASE_URL says so. SQLite runs its write transactions
# as IMMEDIATE (one writer at a time, which is what row locks give us on PostgreSQL) in WAL mode,
# so the web server and the Celery worker can share the file.
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (locks, throttles, the idempotency fast path) -------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="coffer"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -----------------------------------------------------------------------------------
# Broker: CELERY_BROKER_URL, else REDIS_URL, else kombu's filesystem transport (no server).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    # kombu's filesystem transport does not create its folders: a missing one loses messages.
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "broker-processed"),
        # exchange tables (remote control, pidbox): under var/, not the working directory
        "control_folder": str(VAR_DIR / "broker-control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Beat is a singleton (core.beat): however many beat processes run, one schedules and the others
# stand by. The schedule's state is kept in this file; its directory is created on start.
CELERY_BEAT_SCHEDULER = "core.beat:SingletonScheduler"
CELERY_BEAT_SCHEDULE_FILENAME = env("CELERY_BEAT_SCHEDULE_FILENAME", default="") or str(VAR_DIR / "beat" / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_TIMEZONE = "UTC"
# Queues by what they carry (core.queues): each production worker pool consumes one (`-Q money`);
# a worker without -Q consumes them all (make run). CELERY_QUEUE_PREFIX separates deployments or
# test runs sharing one broker.
CELERY_QUEUE_PREFIX = env("CELERY_QUEUE_PREFIX", default="")
CELERY_TASK_QUEUES = [_Queue(CELERY_QUEUE_PREFIX + _name) for _name in ("money", "chain", "webhooks", "email", "maintenance")]
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE_PREFIX + "maintenance"
# The outbox dispatcher by its message's topic and the sweeper by its queue (core.queues.route_task),
# then tasks by name (fnmatch patterns).
CELERY_TASK_ROUTES = (
    "core.queues.route_task",
    {
        pattern: {"queue": CELERY_QUEUE_PREFIX + queue}
        for pattern, queue in {
            "ledger.tasks.expire_holds": "money",
            "*.tasks.*schedule*": "money",  # scheduled payments (RRULE) post money: wallets.tasks.run_schedules
            "payorders.tasks.poll_confirmations": "chain",
            "payorders.tasks.watch_addresses": "chain",
            "payorders.tasks.expire_orders": "chain",
            "compliance.tasks.*": "maintenance",
            "core.tasks.purge_idempotency_records": "maintenance",
            "core.tasks.purge_outbox": "maintenance",
            "accounts.tasks.purge_webhook_deliveries": "maintenance",
            "*.tasks.*partition*": "maintenance",
        }.items()
    },
)
# Outbox topics -> queue (longest prefix wins; anything else: the default queue).
OUTBOX_TOPIC_QUEUES = {
    "payout.": "money",
    "payorder.settle": "money",
    "wallets.schedule.occurrence_failed_email": "email",  # the payer's notice; the payments run as wallets.tasks.run_schedules (money)
    "webhook.": "webhooks",
    "accounts.": "email",
}

# --- Auth -------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/dashboard/login/"
# Repeated failed logins for one account from one client address: after LOGIN_LOCK_THRESHOLD
# failures that address is locked out of that account for LOGIN_LOCK_SECONDS (doubling with each
# further failure, capped at an hour); other addresses are not.
LOGIN_LOCK_THRESHOLD = env.int("LOGIN_LOCK_THRESHOLD", default=5)
LOGIN_LOCK_SECONDS = env.int("LOGIN_LOCK_SECONDS", default=60)
# Distributed guessing: every LOGIN_ACCOUNT_CEILING-th failure of one account (from any address,
# since its last login) locks it for everyone for LOGIN_ACCOUNT_LOCK_SECONDS (doubling, capped at
# a day) and e-mails the owner (accounts.identity.login).
LOGIN_ACCOUNT_CEILING = env.int("LOGIN_ACCOUNT_CEILING", default=50)
LOGIN_ACCOUNT_LOCK_SECONDS = env.int("LOGIN_ACCOUNT_LOCK_SECONDS", default=3600)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "SIGNING_KEY": SECRET_KEY,
    "UPDATE_LAST_LOGIN": False,
}

# --- REST framework -----------------------------------------------------------------------------
THROTTLE_AUTH = env("THROTTLE_AUTH", default="20/min")
THROTTLE_MONEY = env("THROTTLE_MONEY", default="100/second")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Users' JWTs first (organization tokens are left to the next class), then the
        # organization schemes of SPEC 5 (accounts.identity.authentication, accounts.orgs.authentication).
        "accounts.identity.authentication.UserJWTAuthentication",
        "accounts.orgs.authentication.OrganizationTokenAuthentication",
        "accounts.orgs.authentication.ApiKeyAuthentication",
        "accounts.orgs.authentication.ApiKeySignatureAuthentication",
        "accounts.orgs.authentication.HmacSignatureAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.DecimalJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "config.docs.CofferAutoSchema",  # descriptions from a view's own docstrings only
    "DEFAULT_THROTTLE_RATES": {"auth": THROTTLE_AUTH, "money": THROTTLE_MONEY},
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# Retry-After (seconds) of a 503 SERVICE_UNAVAILABLE: the database, cache or broker out of reach (core.outages).
SERVICE_UNAVAILABLE_RETRY_AFTER = env.int("SERVICE_UNAVAILABLE_RETRY_AFTER", default=5)
# The API's body limit (SPEC 5): a request body over it is a 413 PAYLOAD_TOO_LARGE
# (core.middleware, core.parsers). Django applies the same limit to the other pages' forms.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "Coffer API",
    "DESCRIPTION": (
        "Customer wallets on a double-entry ledger, a ledger API for organizations and merchant "
        "crypto pay orders. Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # drf-spectacular's enum naming first, then the error responses every operation can give.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.openapi.document_errors"],
    # Distinct names for choice sets whose fields share a name with other apps' (type, status).
    "ENUM_NAME_OVERRIDES": {
        "LedgerTransactionTypeEnum": "ledger.models.Transaction.Type",
        "LedgerTransactionStatusEnum": "ledger.models.Transaction.Status",
        "LedgerOperationTypeEnum": "ledger.serializers.OPERATION_TYPES",
        "AssetKindEnum": "ledger.models.Asset.Kind",
        "WalletStatusEnum": "ledger.models.Wallet.Status",
        "ReconciliationStatusEnum": "ledger.reconciliation.models.Reconciliation.Status",
        "ReconciliationFormatEnum": "ledger.reconciliation.models.Reconciliation.Format",
        "ReconciliationLineKindEnum": "ledger.reconciliation.models.ReconciliationLine.Kind",
        "ReconciliationLineStatusEnum": "ledger.reconciliation.models.ReconciliationLine.Status",
        "WebhookDeliveryStatusEnum": "accounts.models.WebhookDelivery.Status",
        "PayOrderTypeEnum": "payorders.models.PayOrder.Type",
        "PayOrderStatusEnum": "payorders.models.PayOrder.Status",
        "RefundKindEnum": "payorders.models.Refund.Kind",
        "MovementTypeEnum": "compliance.models.MovementType",
    },
}

# --- I18N, static -------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Email ---------------------------------------------------------------------------------------
# EMAIL_URL (django-environ: smtp://, smtp+tls://user:password@host:587, smtp+ssl://...) configures
# a sending backend; EMAIL_BACKEND names another one (a provider's). With neither, development
# mail is written to the console with codes, secrets and addresses redacted (core.mail):
# production refuses to start without a backend that sends.
EMAIL_URL = env("EMAIL_URL", default="")
if EMAIL_URL:
    globals().update({name: value for name, value in env.email_url_config(EMAIL_URL).items() if value is not None})
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", default="") or "core.mail.RedactingConsoleEmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Coffer <no-reply@coffer.local>")

# --- Coffer ---------------------------------------------------------------------------------------
# Chain and price providers (SPEC 7): the sandbox needs no network.
CHAIN_PROVIDER = env("CHAIN_PROVIDER", default="sandbox")
EVM_RPC_URL = env("EVM_RPC_URL", default="")
PRICE_PROVIDER = env("PRICE_PROVIDER", default="sandbox")
PRICE_FEED_URL = env("PRICE_FEED_URL", default="")
# Confirmations before a payment counts, per chain; the sandbox mines on demand, so it needs few.
CHAIN_CONFIRMATIONS = {"bitcoin": 2, "ethereum": 12, "sandbox": 3, **env.json("CHAIN_CONFIRMATIONS", default={})}
# How often beat asks the chain for confirmations of paid orders (the `chain` queue).
PAYORDER_POLL_CONFIRMATIONS_SECONDS = env.float("PAYORDER_POLL_CONFIRMATIONS_SECONDS", default=15.0)
EVM_CHAIN_ID = env.int("EVM_CHAIN_ID", default=1)
# The chain id in test-mode EIP-681 URIs (sandbox chain, test keys): never a main network.
EVM_TEST_CHAIN_ID = env.int("EVM_TEST_CHAIN_ID", default=11155111)  # Sepolia
# Where a test key's orders are paid on a live deployment (core.livemode): "sandbox" (default: the
# stored sandbox chain, no network, driven by /sandbox/chain/* with the test key) or "evm": a test
# network's node at EVM_TEST_RPC_URL (e.g. Sepolia, whose id EVM_TEST_CHAIN_ID then names), with
# its own token contracts in EVM_TEST_TOKENS. Never the main network's node. Ignored while the
# sandbox chain is the deployment's (CHAIN_PROVIDER=sandbox: everything is on it).
TEST_CHAIN_PROVIDER = env("TEST_CHAIN_PROVIDER", default="sandbox")
EVM_TEST_RPC_URL = env("EVM_TEST_RPC_URL", default="")
EVM_TEST_TOKENS = env.json("EVM_TEST_TOKENS", default={})
# Block explorers for the checkout receipt's transaction link, per chain ({tx_hash} is replaced);
# test-mode orders use the TEST ones. A chain without one shows the hash without a link.
CHAIN_EXPLORER_TX_URLS = {
    "bitcoin": "https://mempool.space/tx/{tx_hash}",
    "ethereum": "https://etherscan.io/tx/{tx_hash}",
    **env.json("CHAIN_EXPLORER_TX_URLS", default={}),
}
CHAIN_EXPLORER_TEST_TX_URLS = {
    "bitcoin": "https://mempool.space/testnet/tx/{tx_hash}",
    "ethereum": "https://sepolia.etherscan.io/tx/{tx_hash}",
    **env.json("CHAIN_EXPLORER_TEST_TX_URLS", default={}),
}
# How often (seconds, per order) the checkout's status poll asks the chain for a broadcast,
# not yet mined payment (mempool / pending block).
CHECKOUT_PENDING_SCAN_SECONDS = env.int("CHECKOUT_PENDING_SCAN_SECONDS", default=5)
# ERC-20 tokens the EVM provider knows, by asset: {"USDC": {"address": "0x...", "decimals": 6}}.
EVM_TOKENS = env.json(
    "EVM_TOKENS", default={"USDC": {"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "decimals": 6}}
)
EVM_RPC_TIMEOUT = env.float("EVM_RPC_TIMEOUT", default=10.0)
EVM_RPC_RETRIES = env.int("EVM_RPC_RETRIES", default=2)
EVM_SCAN_MAX_BLOCKS = env.int("EVM_SCAN_MAX_BLOCKS", default=2000)
PRICE_FEED_TIMEOUT = env.float("PRICE_FEED_TIMEOUT", default=5.0)
PRICE_CACHE_SECONDS = env.int("PRICE_CACHE_SECONDS", default=30)
PRICE_MAX_AGE_SECONDS = env.int("PRICE_MAX_AGE_SECONDS", default=600)
PRICE_SPREAD = Decimal(env("PRICE_SPREAD", default="0.0025"))
# The dashboard's new-order form asks "are you sure?" before an order priced in a crypto asset
# worth more than this, in the organization's settlement currency (a typo of 42.50 BTC for USD).
DASHBOARD_CRYPTO_PRICE_CONFIRM_ABOVE = Decimal(env("DASHBOARD_CRYPTO_PRICE_CONFIRM_ABOVE", default="100"))
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
# Keys that encrypt secrets at rest (API key and webhook secrets, authenticator secrets), newest
# first, comma-separated in FIELD_ENCRYPTION_KEY: the first encrypts, all decrypt (MultiFernet,
# accounts.crypto); `manage.py rotate_field_keys` re-encrypts everything under the first. With
# none, local runs derive one from SECRET_KEY; production requires its own, apart from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[])
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=48)
# Statements of the money path are prepared once per connection (ledger engine, core.db.query). Turn
# off behind a transaction-mode pooler that cannot carry prepared statements (pgbouncer < 1.21).
LEDGER_PREPARED_STATEMENTS = env.bool("LEDGER_PREPARED_STATEMENTS", default=True)
# Hot platform accounts (issuance, fee, FX, settlement) are split into this many rows (ledger.services).
LEDGER_HOT_ACCOUNT_SHARDS = env.int("LEDGER_HOT_ACCOUNT_SHARDS", default=16)
# How long the Redis fast-path lock of a running idempotent request lives (the database guards anyway).
IDEMPOTENCY_LOCK_SECONDS = env.int("IDEMPOTENCY_LOCK_SECONDS", default=60)
# The Redis lock in front of an idempotent request (core.idempotency): "auto" takes it only where the
# database has no advisory lock to answer 409 with (SQLite); PostgreSQL's lock costs no round trip.
IDEMPOTENCY_CACHE_LOCK = env("IDEMPOTENCY_CACHE_LOCK", default="auto")
# How often a process asks the cache whether the limit, fee and risk rules changed
# (compliance.rules); a change made in this process applies at once.
RULES_VERSION_TTL_SECONDS = env.float("RULES_VERSION_TTL_SECONDS", default=1.0)
# Outbox (core.outbox), the one after-commit mechanism: a claimed message's lease; retry backoff
# base * 2^(attempt-1) capped at max, with jitter; dead after max attempts or max age.
OUTBOX_SWEEP_SECONDS = env.int("OUTBOX_SWEEP_SECONDS", default=10)
# How often the beat task `ledger.tasks.expire_holds` releases authorization holds past expiry.
LEDGER_HOLD_EXPIRY_SECONDS = env.float("LEDGER_HOLD_EXPIRY_SECONDS", default=30.0)
# Recurring payments (wallets.schedules): how often the beat task `wallets.tasks.run_schedules` pays due
# occurrences; the shortest gap a rule may have between two occurrences; the waits before each retry of a
# failed occurrence (3 tries over 24 h: at the instance, 1 h later, 24 h after the instance).
SCHEDULE_RUN_SECONDS = env.float("SCHEDULE_RUN_SECONDS", default=30.0)
SCHEDULE_MIN_INTERVAL_SECONDS = env.int("SCHEDULE_MIN_INTERVAL_SECONDS", default=3600)
SCHEDULE_RETRY_DELAYS_SECONDS = [int(v) for v in env.list("SCHEDULE_RETRY_DELAYS_SECONDS", default=["3600", "82800"])]
# Monthly partitions of ledger_entry kept ready ahead of time (ledger.partitions; PostgreSQL),
# by migration 0010 and then daily by beat on the maintenance queue.
LEDGER_PARTITION_MONTHS_AHEAD = env.int("LEDGER_PARTITION_MONTHS_AHEAD", default=3)
# `archive_entries` refuses the current month and this many before it (ledger.archive): late
# reversals, reconciliations and statements of recent months keep their entries.
LEDGER_ARCHIVE_MIN_AGE_MONTHS = env.int("LEDGER_ARCHIVE_MIN_AGE_MONTHS", default=2)
# How long the archive's DETACH waits for ledger_entry's lock before giving up (resumable).
LEDGER_ARCHIVE_LOCK_TIMEOUT_MS = env.int("LEDGER_ARCHIVE_LOCK_TIMEOUT_MS", default=5000)
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=60)
OUTBOX_BACKOFF_BASE_SECONDS = env.int("OUTBOX_BACKOFF_BASE_SECONDS", default=10)
OUTBOX_BACKOFF_MAX_SECONDS = env.int("OUTBOX_BACKOFF_MAX_SECONDS", default=3600)
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=30)
OUTBOX_MAX_AGE_SECONDS = env.int("OUTBOX_MAX_AGE_SECONDS", default=3 * 24 * 3600)
# Done outbox messages are deleted this many days after delivery (core.outbox.outbox_purge, hourly).
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=30)
# How long dropping an old month of the outbox (core.outbox.outbox_drop_months) waits for the
# outbox table's lock before leaving the month for the next run.
OUTBOX_DROP_LOCK_TIMEOUT_MS = env.int("OUTBOX_DROP_LOCK_TIMEOUT_MS", default=5000)
# How long dropping an expired month of idempotency records (core.idempotency, hourly) waits for
# the table's lock, which every money request's insert holds, before leaving it for the next run.
IDEMPOTENCY_DROP_LOCK_TIMEOUT_MS = env.int("IDEMPOTENCY_DROP_LOCK_TIMEOUT_MS", default=2000)
# The currency the default limit and fee rules (blank currency) and TWO_FACTOR_THRESHOLD are in;
# each movement converts at the price provider's mid rate (core.reference). Rates are kept per
# process for LIMITS_RATE_CACHE_SECONDS (the HTTP feed is also cached for PRICE_CACHE_SECONDS).
LIMITS_REFERENCE_CURRENCY = env("LIMITS_REFERENCE_CURRENCY", default="USD")
LIMITS_RATE_CACHE_SECONDS = env.float("LIMITS_RATE_CACHE_SECONDS", default=10.0)
# A single outgoing movement worth this much (reference currency) or more needs X-2FA-Code.
TWO_FACTOR_THRESHOLD = Decimal(env("TWO_FACTOR_THRESHOLD", default="5000"))
# Per-asset overrides of the step-up threshold, in that asset's major units, as strings: {"BTC": "0.1"}.
TWO_FACTOR_THRESHOLDS = env.json("TWO_FACTOR_THRESHOLDS", default={})
# Customer withdrawals and exchanges (wallets): payout provider, sandbox settle delay / forced failure
# (payouts are sent and checked through the outbox), and how long an exchange quote is honoured.
PAYOUT_PROVIDER = env("PAYOUT_PROVIDER", default="sandbox")
PAYOUT_SANDBOX_SETTLE_SECONDS = env.float("PAYOUT_SANDBOX_SETTLE_SECONDS", default=5.0)
PAYOUT_SANDBOX_FAIL = env.bool("PAYOUT_SANDBOX_FAIL", default=False)
EXCHANGE_QUOTE_TTL_SECONDS = env.int("EXCHANGE_QUOTE_TTL_SECONDS", default=30)

# --- Audit chain (compliance.audit) ------------------------------------------------------------
# HMAC key of the audit chain and its checkpoints: a secret, never stored in the database.
# No default here: local and test settings carry a development key, production requires one.
AUDIT_CHAIN_KEY = env("AUDIT_CHAIN_KEY", default="")
# The sequencer's signed checkpoints, one JSON line each, outside the database it protects.
AUDIT_CHECKPOINT_PATH = env("AUDIT_CHECKPOINT_PATH", default="") or str(VAR_DIR / "audit" / "checkpoints.jsonl")
# How often the beat task links committed events into the chain, and how many per transaction.
AUDIT_CHAIN_ADVANCE_SECONDS = env.float("AUDIT_CHAIN_ADVANCE_SECONDS", default=2.0)
AUDIT_CHAIN_BATCH = env.int("AUDIT_CHAIN_BATCH", default=1000)

# --- Logging: every record passes the redaction filter ---------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "core.logging.RedactingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
WEBHOOK_REQUIRE_HTTPS = env.bool("WEBHOOK_REQUIRE_HTTPS", default=False)
# Seconds before each retry of a failed webhook delivery (accounts.webhooks.deliver): 5 s, 30 s,
# 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h (about 24 hours in all), then it has failed.
WEBHOOK_RETRY_SCHEDULE_SECONDS = env.list(
    "WEBHOOK_RETRY_SCHEDULE_SECONDS", cast=float, default=[5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]
)
# Finished webhook deliveries (delivered or failed) and their attempts are kept this many days
# after the delivery was created (accounts.webhooks.retention, hourly on the maintenance queue):
# on PostgreSQL a month's partitions are dropped once the whole month is past it, so a delivery
# stays between this and this plus one month. Pending deliveries stay whatever their age.
WEBHOOK_DELIVERY_RETENTION_DAYS = env.int("WEBHOOK_DELIVERY_RETENTION_DAYS", default=90)
# How long the retention's DETACH and DROP of a month wait for a lock before giving up (next run).
WEBHOOK_RETENTION_LOCK_TIMEOUT_MS = env.int("WEBHOOK_RETENTION_LOCK_TIMEOUT_MS", default=5000)

# --- Compliance back office (compliance.backoffice, compliance.sanctions) ---
# Approving a review case at or above this amount (major units of its asset) needs a second
# staff member; REVIEW_FOUR_EYES_AMOUNTS overrides it per currency ("BTC=0.5,ETH=5"); blank: off.
REVIEW_FOUR_EYES_AMOUNT = env("REVIEW_FOUR_EYES_AMOUNT", default="10000") or None
REVIEW_FOUR_EYES_AMOUNTS = env.dict("REVIEW_FOUR_EYES_AMOUNTS", default={})
# A review case older than this is shown red in the queue (amber from half of it).
REVIEW_SLA_HOURS = env.float("REVIEW_SLA_HOURS", default=24.0)
# Scheduled sanctions re-import: a file path or an http(s) URL, its format (ofac_sdn,
# opensanctions or coffer) and the list's name; blank location: no scheduled import.
SANCTIONS_SOURCE_LOCATION = env("SANCTIONS_SOURCE_LOCATION", default="")
SANCTIONS_SOURCE_FORMAT = env("SANCTIONS_SOURCE_FORMAT", default="opensanctions")
SANCTIONS_SOURCE_NAME = env("SANCTIONS_SOURCE_NAME", default="")
SANCTIONS_REIMPORT_SECONDS = env.float("SANCTIONS_REIMPORT_SECONDS", default=6 * 3600.0)

# === Scale-out (issue 15: PgBouncer, read replica, metrics, request ids) ==========================
# Kept in one block; docs/deploy.md says which process needs which.
from config.env import env as _env  # noqa: E402

# Behind a transaction-mode pooler (PgBouncer 1.18): no prepared statements, no server-side
# cursors (core.pooling). DATABASE_POOLER_DETECT: switch both off when a connection's server port
# differs from the one dialled (an undeclared pooler in between).
DATABASE_TRANSACTION_POOLING = _env.bool("DATABASE_TRANSACTION_POOLING", default=False)
DATABASE_POOLER_DETECT = _env.bool("DATABASE_POOLER_DETECT", default=True)
if DATABASE_TRANSACTION_POOLING and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    LEDGER_PREPARED_STATEMENTS = _env.bool("LEDGER_PREPARED_STATEMENTS", default=False)
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

# A streaming read replica for lag-tolerant reads (core.routing). Its URL may point at a pooler too
# (DATABASE_REPLICA_TRANSACTION_POOLING).
DATABASE_REPLICA_URL = _env("DATABASE_REPLICA_URL", default="")
REPLICA_MAX_LAG_SECONDS = _env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
REPLICA_CHECK_SECONDS = _env.float("REPLICA_CHECK_SECONDS", default=1.0)
READ_YOUR_WRITES_SECONDS = _env.int("READ_YOUR_WRITES_SECONDS", default=5)
REPLICA_READ_ROUTES = _env.list("REPLICA_READ_ROUTES", default=[
    "transaction-list", "transaction-entries", "wallet-entries", "withdrawal-list", "audit-log-list",
    "webhook-deliveries", "dashboard:overview", "dashboard:transactions", "dashboard:deliveries", "admin:*_changelist",
])
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = _env.db_url_config(DATABASE_REPLICA_URL)
    DATABASES["replica"].setdefault("CONN_MAX_AGE", DATABASES["default"].get("CONN_MAX_AGE", 0))
    DATABASES["replica"].setdefault("CONN_HEALTH_CHECKS", True)
    DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", _env.int("REPLICA_CONNECT_TIMEOUT", default=2))
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    if _env.bool("DATABASE_REPLICA_TRANSACTION_POOLING", default=DATABASE_TRANSACTION_POOLING):
        DATABASES["replica"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASE_ROUTERS = ["core.routing.ReplicaRouter"]
    MIDDLEWARE = [*MIDDLEWARE, "core.routing.ReplicaRoutingMiddleware"]

# Every PostgreSQL alias through core.postgresql: Django's backend whose per-request health check
# (CONN_HEALTH_CHECKS) reads the socket's state instead of sending `SELECT 1`.
for _database in DATABASES.values():
    if _database["ENGINE"] == "django.db.backends.postgresql":
        _database["ENGINE"] = "core.postgresql"

# Request ids, the RateLimit and Idempotency-Retention headers, HTTP metrics (core.requestid): first.
MIDDLEWARE = ["core.requestid.RequestMiddleware", *MIDDLEWARE]
# GET /metrics with `Authorization: Bearer <METRICS_TOKEN>`; empty: the endpoint answers 404 (core.metrics).
METRICS_TOKEN = _env("METRICS_TOKEN", default="")
# A Celery worker's own exporter (no token: bind it to a private interface); 0 = none.
METRICS_WORKER_PORT = _env.int("METRICS_WORKER_PORT", default=0)
METRICS_WORKER_BIND = _env("METRICS_WORKER_BIND", default="127.0.0.1")

# Structured logs: one JSON object per line with the request id (LOG_FORMAT=plain for a terminal).
LOG_FORMAT = _env("LOG_FORMAT", default="json")
LOGGING["filters"]["request_id"] = {"()": "core.requestid.RequestIdFilter"}
LOGGING["formatters"]["json"] = {"()": "core.requestid.JsonFormatter"}
LOGGING["formatters"]["plain"]["format"] = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
LOGGING["handlers"]["console"]["filters"] = [*LOGGING["handlers"]["console"]["filters"], "request_id"]
LOGGING["handlers"]["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "plain"
# === end of the scale-out block ===================================================================
