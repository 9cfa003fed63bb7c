"""The site's landing page (`/`): a public page that points to the dashboard and the API docs."""

from django.shortcuts import render


def landing(request):
    return render(request, "landing.html")
