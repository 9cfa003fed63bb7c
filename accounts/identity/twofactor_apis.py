"""2FA endpoints (SPEC 6 "2FA step-up"): enrol and confirm an authenticator app, send and check
e-mail codes, and read the caller's 2FA state. User tokens only (organization credentials get 403).
Thin: validate, call one service of accounts.identity.twofactor, totp or email_codes, render. The semantics, including why
`verify-code` consumes nothing, are in that module's docstring."""

from datetime import timedelta

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.orgs.tenancy import IsUser
from accounts.identity.email_codes import email_otp_send
from accounts.identity.totp import totp_confirm, totp_enrol
from accounts.identity.twofactor import (
    HEADER,
    email_resend_seconds,
    twofactor_code_from,
    twofactor_status,
    twofactor_verify,
)

_ERROR = OpenApiResponse(description='`{"error": {"code", "message", "details"}}`')
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CODE_HEADER = OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=False, description="A current code, as an alternative to the body's `code`.")


class TwoFactorCodeInput(serializers.Serializer):
    code = serializers.CharField(max_length=16, help_text="6 digits from the authenticator app or the e-mail.")


class TotpEnrolInput(serializers.Serializer):
    code = serializers.CharField(max_length=16, required=False, allow_blank=True, help_text="Needed only to replace a confirmed authenticator: a current TOTP or e-mail code.")


class TotpEnrolOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 secret, shown once.")
    otpauth_uri = serializers.CharField()
    qr_svg = serializers.CharField(help_text="The otpauth URI as an SVG QR code (data: URI).")
    re_enrolment = serializers.BooleanField(help_text="True when this replaces a confirmed authenticator (which keeps working until this one is confirmed).")
    confirmed = serializers.BooleanField(help_text="Always false: confirm with POST /auth/2fa/totp/confirm.")


class TotpConfirmOutput(serializers.Serializer):
    confirmed = serializers.BooleanField()
    confirmed_at = serializers.DateTimeField()


class EmailCodeSentOutput(serializers.Serializer):
    sent = serializers.BooleanField()
    expires_at = serializers.DateTimeField()
    resend_available_at = serializers.DateTimeField()


class CodeVerifiedOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    method = serializers.ChoiceField(choices=["totp", "email"])
    expires_at = serializers.DateTimeField(allow_null=True, help_text="E-mail codes: until when the code can be spent.")


class TwoFactorTotpStatus(serializers.Serializer):
    confirmed = serializers.BooleanField()
    confirmed_at = serializers.DateTimeField(allow_null=True)
    pending_confirmation = serializers.BooleanField()


class TwoFactorEmailStatus(serializers.Serializer):
    code_active = serializers.BooleanField()
    code_expires_at = serializers.DateTimeField(allow_null=True)
    resend_available_at = serializers.DateTimeField(allow_null=True)


class TwoFactorStatusOutput(serializers.Serializer):
    totp = TwoFactorTotpStatus()
    email = TwoFactorEmailStatus()
    locked_for_seconds = serializers.IntegerField()
    header = serializers.CharField()


def _body_code(request, data) -> str | None:
    return data.validated_data.get("code") or twofactor_code_from(request)


class _TwoFactorApi(APIView):
    permission_classes = [IsUser]


class TwoFactorStatusApi(_TwoFactorApi):
    @extend_schema(
        tags=["auth"],
        summary="Your 2FA state",
        responses={200: TwoFactorStatusOutput, 401: _ERROR, 403: _ERROR},
        examples=[
            OpenApiExample(
                "Authenticator confirmed",
                value={
                    "totp": {"confirmed": True, "confirmed_at": "2025-01-01T10:00:00Z", "pending_confirmation": False},
                    "email": {"code_active": False, "code_expires_at": None, "resend_available_at": None},
                    "locked_for_seconds": 0,
                    "header": HEADER,
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        return Response(TwoFactorStatusOutput(twofactor_status(user=request.user)).data)


class TotpEnrolApi(_TwoFactorApi):
    @extend_schema(
        tags=["auth"],
        summary="Enrol an authenticator app (TOTP)",
        description=(
            "Returns a new secret and its otpauth URI (issuer Coffer) to scan; it becomes active with "
            "`POST /auth/2fa/totp/confirm`. Before confirmation, enrolling again replaces the secret. "
            "Replacing a confirmed authenticator needs a current code (TOTP or e-mail): none -> 403 "
            "2FA_REQUIRED, wrong -> 403 2FA_VERIFICATION_FAILED."
        ),
        request=TotpEnrolInput,
        parameters=[_CODE_HEADER],
        responses={200: TotpEnrolOutput, 401: _ERROR, 403: _ERROR},
        examples=[
            OpenApiExample("First enrolment", value={}, request_only=True),
            OpenApiExample("Replace a confirmed authenticator", value={"code": "123456"}, request_only=True),
            OpenApiExample(
                "Secret",
                value={
                    "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                    "otpauth_uri": "otpauth://totp/Coffer:jane%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Coffer",
                    "qr_svg": "data:image/svg+xml,...",
                    "re_enrolment": False,
                    "confirmed": False,
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request):
        data = TotpEnrolInput(data=request.data)
        data.is_valid(raise_exception=True)
        enrolment = totp_enrol(user=request.user, code=_body_code(request, data))
        body = {
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
            "qr_svg": enrolment.qr_svg_data_uri,
            "re_enrolment": enrolment.re_enrolment,
            "confirmed": False,
        }
        return Response(TotpEnrolOutput(body).data, headers=_NO_STORE)


class TotpConfirmApi(_TwoFactorApi):
    @extend_schema(
        tags=["auth"],
        summary="Confirm the authenticator app",
        description="A current code of the secret from the enrolment (+-30 s). 409 INVALID_STATE when nothing awaits confirmation.",
        request=TwoFactorCodeInput,
        responses={200: TotpConfirmOutput, 400: _ERROR, 401: _ERROR, 403: _ERROR, 409: _ERROR},
        examples=[
            OpenApiExample("Confirm", value={"code": "123456"}, request_only=True),
            OpenApiExample("Confirmed", value={"confirmed": True, "confirmed_at": "2025-01-01T10:00:00Z"}, response_only=True),
        ],
    )
    def post(self, request):
        data = TwoFactorCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        device = totp_confirm(user=request.user, code=data.validated_data["code"])
        return Response(TotpConfirmOutput({"confirmed": True, "confirmed_at": device.confirmed_at}).data)


class EmailCodeSendApi(_TwoFactorApi):
    @extend_schema(
        tags=["auth"],
        summary="E-mail a one-time code",
        description=(
            "Sends a 6-digit code to your e-mail address, valid 10 minutes, for 5 attempts, once; it "
            "replaces any earlier code. At most one request per 30 s (429 RATE_LIMITED with Retry-After)."
        ),
        request=None,
        responses={202: EmailCodeSentOutput, 401: _ERROR, 403: _ERROR, 429: _ERROR},
        examples=[
            OpenApiExample(
                "Sent",
                value={"sent": True, "expires_at": "2025-01-01T10:10:00Z", "resend_available_at": "2025-01-01T10:00:30Z"},
                response_only=True,
                status_codes=["202"],
            )
        ],
    )
    def post(self, request):
        otp = email_otp_send(user=request.user)
        body = {"sent": True, "expires_at": otp.expires_at, "resend_available_at": otp.created_at + timedelta(seconds=email_resend_seconds())}
        return Response(EmailCodeSentOutput(body).data, status=status.HTTP_202_ACCEPTED)


class CodeVerifyApi(_TwoFactorApi):
    @extend_schema(
        tags=["auth"],
        summary="Check a 2FA code without spending it",
        description=(
            "Answers whether the code (TOTP or e-mail) would pass a step-up right now, and consumes "
            f"nothing: send it afterwards in `{HEADER}` with the money request, which spends it. A wrong "
            "code counts like a failed step-up (e-mail code attempts, lockout after repeated failures)."
        ),
        request=TwoFactorCodeInput,
        responses={200: CodeVerifiedOutput, 400: _ERROR, 401: _ERROR, 403: _ERROR},
        examples=[
            OpenApiExample("Check", value={"code": "123456"}, request_only=True),
            OpenApiExample("Valid", value={"valid": True, "method": "email", "expires_at": "2025-01-01T10:10:00Z"}, response_only=True),
        ],
    )
    def post(self, request):
        data = TwoFactorCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = twofactor_verify(user=request.user, code=data.validated_data["code"])
        return Response(CodeVerifiedOutput({"valid": True, "method": check.method, "expires_at": check.email_expires_at}).data)
