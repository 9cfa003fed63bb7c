"""Users, auth and 2FA endpoints, under /api/v1/."""

from django.urls import path

from accounts.identity import apis, twofactor_apis

urlpatterns = [
    path("auth/signup", apis.SignupApi.as_view(), name="auth-signup"),
    path("auth/token", apis.TokenApi.as_view(), name="auth-token"),
    path("auth/token/refresh", apis.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/logout", apis.LogoutApi.as_view(), name="auth-logout"),
    path("users/me", apis.UserMeApi.as_view(), name="user-me"),
    path("users/me/password", apis.UserPasswordChangeApi.as_view(), name="user-password-change"),
    path("users/<int:user_id>", apis.UserDetailApi.as_view(), name="user-detail"),
    path("auth/2fa", twofactor_apis.TwoFactorStatusApi.as_view(), name="2fa-status"),
    path("auth/2fa/totp", twofactor_apis.TotpEnrolApi.as_view(), name="2fa-totp-enrol"),
    path("auth/2fa/totp/confirm", twofactor_apis.TotpConfirmApi.as_view(), name="2fa-totp-confirm"),
    path("auth/2fa/send-code", twofactor_apis.EmailCodeSendApi.as_view(), name="2fa-send-code"),
    path("auth/2fa/verify-code", twofactor_apis.CodeVerifyApi.as_view(), name="2fa-verify-code"),
]
