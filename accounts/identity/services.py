"""Writers of users: signup and password change.

Invariants:
- Every user signs up with their own `Customer` (kyc_level none), in the same transaction.
- Passwords pass Django's validators and are hashed with Argon2; they are never echoed or logged.
- Signups and password changes land in the audit chain in the same transaction.
- Changing the password makes every earlier refresh token useless (accounts.identity.tokens
  checks a fingerprint of the password hash).
"""

from __future__ import annotations

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from accounts.models import Customer, User
from compliance.services import audit_record
from core.errors import ValidationFailed


def fields_error(fields: dict[str, list[str]], message: str | None = None) -> ValidationFailed:
    first_field, errors = next(iter(fields.items()))
    return ValidationFailed(message or f"Invalid input: {first_field}: {errors[0]}", details={"fields": fields})


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
    duplicate = fields_error({"email": ["A user with this email already exists."]})
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
