"""The hosted checkout page, mounted at /pay/ (config/urls.py). Ids are matched as strings so
that a malformed id gets the same friendly 404 page as an unknown one."""

from django.urls import path

from payorders.checkout import views

urlpatterns = [
    path("<str:public_id>", views.checkout_page, name="checkout"),
    path("<str:public_id>/status.json", views.checkout_status, name="checkout-status"),
    path("<str:public_id>/quote", views.checkout_quote, name="checkout-quote"),
    path("<str:public_id>/payment-details", views.checkout_payment_details, name="checkout-payment-details"),
    path("<str:public_id>/choose-again", views.checkout_choose_again, name="checkout-choose-again"),
    path("<str:public_id>/qr.svg", views.checkout_qr, name="checkout-qr"),
]
