from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("label_gateway_django.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    # Django's own logout (POST only): the user_logged_out signal revokes the session
    # on the gateway, then LOGOUT_REDIRECT_URL leads back to the login page.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("test/home/", views.home, name="home"),
    path("test/logout/", views.logout),
    path("test/stats/", views.stats_view),
    path("test/stats/reset/", views.stats_reset),
    path("test/health/", views.health),
]
