"""Users and auth endpoints (SPEC 6 "Users and auth"). Thin: validate, call one service, render."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.orgs.oauth import with_basic_client_credentials
from accounts.identity.selectors import user_get
from accounts.identity.serializers import (
    PasswordChangeInput,
    SignupInput,
    SignupOutput,
    TokenInput,
    TokenOutput,
    LogoutInput,
    TokenRefreshInput,
    UserDetailOutput,
)
from accounts.identity.services import user_change_password, user_signup
from accounts.identity.tokens import token_grant, token_refresh, token_revoke
from accounts.orgs.tenancy import IsUser
from accounts.identity.throttles import AuthAccountThrottle, AuthAddressThrottle, client_address
from core.parsers import DecimalJSONParser

_ERROR = OpenApiResponse(description='`{"error": {"code", "message", "details"}}`')
_TOKEN_EXAMPLE = OpenApiExample(
    "Tokens",
    value={"access_token": "eyJhbGciOiJIUzI1NiIs…", "token_type": "bearer", "expires_in": 900, "refresh_token": "eyJhbGciOiJIUzI1NiIs…"},
    response_only=True,
)


def client_ip(request) -> str:
    return client_address(request)  # the address the throttles and the login lock key on


class _PublicAuthApi(APIView):
    """No authentication (a stale Authorization header must not stop a login), throttled per
    address and per account."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthAddressThrottle, AuthAccountThrottle]
    parser_classes = [DecimalJSONParser, FormParser, MultiPartParser]


class SignupApi(_PublicAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Sign up",
        description=(
            "201 with what was sent (never the password), whether the address was free or already has an account: "
            "the answer does not tell which. A new address gets its user; the owner of a taken one gets an e-mail. "
            "Then log in with POST /auth/token."
        ),
        request=SignupInput,
        responses={201: SignupOutput, 400: _ERROR, 429: _ERROR},
        examples=[
            OpenApiExample(
                "Signup",
                value={"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "password": "a-long-unusual-passphrase"},
                request_only=True,
            ),
            OpenApiExample("Created", value={"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"}, response_only=True, status_codes=["201"]),
        ],
    )
    def post(self, request):
        data = SignupInput(data=request.data)
        data.is_valid(raise_exception=True)
        body = user_signup(**data.validated_data, client_ip=client_ip(request))
        return Response(SignupOutput(body).data, status=status.HTTP_201_CREATED)


class TokenApi(_PublicAuthApi):
    @extend_schema(
        tags=["auth"],
        summary="Get tokens (OAuth2 password or client_credentials grant)",
        description=(
            "Form or JSON. `grant_type=password` (default): `username` is the email. "
            "`grant_type=client_credentials`: `client_id` / `client_secret` of an organization API key. "
            "Repeated failures lock the account for a while (401 AUTHENTICATION_FAILED saying so)."
        ),
        request=TokenInput,
        responses={200: TokenOutput, 400: _ERROR, 401: _ERROR, 429: _ERROR},
        examples=[
            OpenApiExample("Password grant", value={"username": "jane@example.com", "password": "a-long-unusual-passphrase"}, request_only=True),
            _TOKEN_EXAMPLE,
        ],
    )
    def post(self, request):
        grant_type = request.data.get("grant_type") if hasattr(request.data, "get") else None
        data = request.data if hasattr(request.data, "get") else {}
        data = with_basic_client_credentials(request, data)  # HTTP Basic client_id:client_secret (accounts.orgs.oauth)
        tokens = token_grant(grant_type=grant_type if isinstance(grant_type, str) else None, data=data, client_ip=client_ip(request))
        return Response(tokens, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class TokenRefreshApi(_PublicAuthApi):
    throttle_classes = [AuthAddressThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Refresh tokens",
        description=(
            "Returns the next pair; the refresh token sent is used up. Sending a used refresh token again "
            "ends its whole session (every refresh token descended from that login): 401 with "
            "`details.reason` `refresh_token_reused`, then `session_revoked`."
        ),
        request=TokenRefreshInput,
        responses={200: TokenOutput, 400: _ERROR, 401: _ERROR},
        examples=[OpenApiExample("Refresh", value={"refresh_token": "eyJhbGciOiJIUzI1NiIs…"}, request_only=True), _TOKEN_EXAMPLE],
    )
    def post(self, request):
        data = TokenRefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = token_refresh(refresh_token=data.validated_data["refresh_token"], client_ip=client_ip(request))
        return Response(tokens, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class LogoutApi(_PublicAuthApi):
    throttle_classes = [AuthAddressThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Log out (revoke a refresh token and its session)",
        description="The refresh token and every refresh token of its session stop working; other logins are untouched. Idempotent.",
        request=LogoutInput,
        responses={204: None, 400: _ERROR, 401: _ERROR, 429: _ERROR},
        examples=[OpenApiExample("Logout", value={"refresh_token": "eyJhbGciOiJIUzI1NiIs…"}, request_only=True)],
    )
    def post(self, request):
        data = LogoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        token_revoke(refresh_token=data.validated_data["refresh_token"], client_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


_USER_EXAMPLE = OpenApiExample(
    "A user",
    value={"id": 1, "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "is_staff": False, "date_joined": "2026-05-31T12:00:00Z"},
    response_only=True,
)


class UserMeApi(APIView):
    permission_classes = [IsUser]  # a person's token only: an organization credential has no user

    @extend_schema(tags=["users"], summary="The current user", responses={200: UserDetailOutput, 401: _ERROR}, examples=[_USER_EXAMPLE])
    def get(self, request):
        return Response(UserDetailOutput(request.user).data)


class UserDetailApi(APIView):
    permission_classes = [IsUser]  # a person's token only: an organization credential has no user

    @extend_schema(tags=["users"], summary="A user (yourself, or anyone for staff)", responses={200: UserDetailOutput, 401: _ERROR, 404: _ERROR}, examples=[_USER_EXAMPLE])
    def get(self, request, user_id: int):
        return Response(UserDetailOutput(user_get(viewer=request.user, user_id=user_id)).data)


class UserPasswordChangeApi(APIView):
    permission_classes = [IsUser]  # a person's token only: an organization credential has no user
    throttle_classes = [AuthAddressThrottle]

    @extend_schema(
        tags=["users"],
        summary="Change your password",
        description="Refresh tokens issued before the change stop working.",
        request=PasswordChangeInput,
        responses={204: None, 400: _ERROR, 401: _ERROR},
        examples=[OpenApiExample("Change", value={"current_password": "old passphrase", "new_password": "a new long passphrase"}, request_only=True)],
    )
    def post(self, request):
        data = PasswordChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        user_change_password(user=request.user, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)
