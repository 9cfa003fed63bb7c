from django.apps import AppConfig


class PayordersConfig(AppConfig):
    name = "payorders"
    verbose_name = "Pay orders"
