"""Reads of users, access-checked: a user sees themselves; staff see anyone. Anyone else's id
is a 404, never a 403 that would confirm the account exists."""

from accounts.models import User
from core.errors import NotFound


def user_get(*, viewer: User, user_id: int) -> User:
    if not viewer or not viewer.is_authenticated:
        raise NotFound("No such user.")
    if viewer.pk == user_id:
        return viewer
    if viewer.is_staff or viewer.is_superuser:
        user = User.objects.filter(pk=user_id).first()
        if user is not None:
            return user
    raise NotFound("No such user.")
