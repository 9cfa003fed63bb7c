"""Input and output serializers of the users and auth endpoints (names unique for the schema)."""

from rest_framework import serializers

from accounts.models import User


class SignupInput(serializers.Serializer):
    first_name = serializers.CharField(max_length=150, allow_blank=True, required=False, default="")
    last_name = serializers.CharField(max_length=150, allow_blank=True, required=False, default="")
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=256, write_only=True, trim_whitespace=False, style={"input_type": "password"})


class SignupOutput(serializers.Serializer):
    """What a signup answers, the same whether the address was free or taken (no id: that would tell)."""

    first_name = serializers.CharField()
    last_name = serializers.CharField()
    email = serializers.EmailField()


class UserOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "first_name", "last_name", "email"]
        read_only_fields = fields


class UserDetailOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "first_name", "last_name", "email", "is_staff", "date_joined"]
        read_only_fields = fields


class TokenInput(serializers.Serializer):
    grant_type = serializers.CharField(required=False, default="password", help_text="`password` (default) or `client_credentials`.")
    username = serializers.CharField(required=False, help_text="The user's email (password grant).")
    password = serializers.CharField(required=False, trim_whitespace=False, style={"input_type": "password"})
    client_id = serializers.CharField(required=False, help_text="API key id (client_credentials grant).")
    client_secret = serializers.CharField(required=False, help_text="API key secret (client_credentials grant).")


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    refresh_token = serializers.CharField(required=False)


class TokenRefreshInput(serializers.Serializer):
    refresh_token = serializers.CharField()


class LogoutInput(serializers.Serializer):
    refresh_token = serializers.CharField(help_text="The refresh token of the session to end.")


class PasswordChangeInput(serializers.Serializer):
    current_password = serializers.CharField(trim_whitespace=False, max_length=256)
    new_password = serializers.CharField(trim_whitespace=False, max_length=256)
