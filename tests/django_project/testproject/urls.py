from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("label_gateway_django.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("test/logout/", views.logout),
    path("test/stats/", views.stats_view),
    path("test/stats/reset/", views.stats_reset),
    path("test/health/", views.health),
]
