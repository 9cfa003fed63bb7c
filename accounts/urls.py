from django.urls import path

from accounts import apis

urlpatterns = [
    path("auth/signup", apis.SignupApi.as_view(), name="auth-signup"),
    path("auth/token", apis.TokenApi.as_view(), name="auth-token"),
    path("auth/token/refresh", apis.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("users/me", apis.UserMeApi.as_view(), name="user-me"),
    path("users/me/password", apis.UserPasswordChangeApi.as_view(), name="user-password-change"),
    path("users/<int:user_id>", apis.UserDetailApi.as_view(), name="user-detail"),
]
