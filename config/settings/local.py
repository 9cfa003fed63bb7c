"""Local development and the README's run command: embedded defaults, DEBUG on by default."""

from config.env import env

from .base import *  # noqa: F403

DEBUG = env.bool("DEBUG", default=True)
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=True)
# A development key only: production settings require their own AUDIT_CHAIN_KEY.
AUDIT_CHAIN_KEY = env("AUDIT_CHAIN_KEY", default="") or "coffer-local-audit-chain-key-do-not-use-in-production"
