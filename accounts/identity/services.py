"""Writers of users: signup and password change.

Invariants:
- Every user signs up with their own `Customer` (kyc_level none), in the same transaction.
- The public signup (`user_signup`) does not reveal registered e-mails: a taken address gets the
  same answer as a new one (after the same password checks and hashing), nothing about the
  account changes, and its owner is e-mailed instead (outbox topic `accounts.signup.existing`,
  at most one mail per account and hour).
- Passwords pass Django's validators and are hashed with Argon2; they are never echoed or logged.
- Signups and password changes land in the audit chain in the same transaction.
- Changing the password makes every earlier refresh token useless (accounts.identity.tokens
  checks a fingerprint of the password hash).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Customer, User
from compliance.audit import audit_record
from core.errors import ValidationFailed, fields_error
from core.models import OutboxMessage
from core.outbox import outbox_emit

SIGNUP_EXISTING_TOPIC = "accounts.signup.existing"


class EmailTaken(ValidationFailed):
    """A user with this e-mail exists (`user_create`; the public signup never shows it)."""


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


# --- Signup --------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, email: str, password: str, first_name: str = "", last_name: str = "", client_ip: str = "") -> User:
    """Sign a person up: the user (password checked by Django's validators, hashed with Argon2)
    and their own Customer profile, in one transaction."""
    email = normalize_email(email)
    candidate = User(email=email, first_name=first_name, last_name=last_name)
    try:
        password_validation.validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise fields_error({"password": list(exc.messages)}) from exc
    duplicate = EmailTaken("Invalid input: email: A user with this email already exists.", details={"fields": {"email": ["A user with this email already exists."]}})
    if User.objects.filter(email__iexact=email).exists():
        raise duplicate
    try:
        with transaction.atomic():  # a savepoint: a concurrent signup may win the unique index
            user = User.objects.create_user(email=email, password=password, first_name=first_name, last_name=last_name)
    except IntegrityError as exc:
        raise duplicate from exc
    Customer.objects.create(user=user, name=user.full_name, email=email, kyc_level=Customer.KycLevel.NONE)
    audit_record(actor=user, action="user.signup", target=user, data={"client_ip": client_ip})
    return user


def user_signup(*, email: str, password: str, first_name: str = "", last_name: str = "", client_ip: str = "") -> dict[str, Any]:
    """The public signup: what the caller sent back, whether the address was free (a new user
    and customer) or taken (its owner is told by e-mail; nothing else changes). Invalid input
    (a weak password, a malformed address) is a 400 either way."""
    email = normalize_email(email)
    try:
        user_create(email=email, password=password, first_name=first_name, last_name=last_name, client_ip=client_ip)
    except EmailTaken:
        _signup_existing(email=email, password=password, client_ip=client_ip)
    return {"first_name": first_name, "last_name": last_name, "email": email}


@transaction.atomic
def _signup_existing(*, email: str, password: str, client_ip: str) -> None:
    User().set_password(password)  # the hasher's time, as a real signup spends it
    owner = User.objects.filter(email__iexact=email).first()
    if owner is None:  # deleted meanwhile: nothing to tell anyone
        return
    hour = timezone.now().strftime("%Y%m%d%H")
    outbox_emit(topic=SIGNUP_EXISTING_TOPIC, key=f"signup-existing-{owner.pk}-{hour}", payload={"user_id": owner.pk})
    audit_record(action="user.signup_existing_email", target=owner, data={"client_ip": client_ip})


def signup_existing_notify(message: OutboxMessage) -> None:
    """Outbox handler: tell an account's owner that someone tried to sign up with their address."""
    owner = User.objects.filter(pk=message.payload.get("user_id"), is_active=True).first()
    if owner is None:
        return
    send_mail(
        subject="Someone tried to create a Coffer account with your e-mail",
        message=(
            "Someone tried to sign up for Coffer with this e-mail address, which already has an account. "
            "No new account was made and nothing about yours changed.\n\n"
            "If it was you, log in with your existing password. If it was not, you can ignore this message; "
            "if you think someone knows your password, change it."
        ),
        from_email=None,
        recipient_list=[owner.email],
    )


# --- Password ---------------------------------------------------------------------------------------


@transaction.atomic
def user_change_password(*, user: User, current_password: str, new_password: str) -> User:
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.check_password(current_password or ""):
        raise fields_error({"current_password": ["The current password is not correct."]})
    if current_password == new_password:
        raise fields_error({"new_password": ["The new password must differ from the current one."]})
    try:
        password_validation.validate_password(new_password, user=user)
    except DjangoValidationError as exc:
        raise fields_error({"new_password": list(exc.messages)}) from exc
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit_record(actor=user, action="user.password_changed", target=user)
    return user
