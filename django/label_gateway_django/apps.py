from django.apps import AppConfig


class LabelGatewayConfig(AppConfig):
    name = "label_gateway_django"
    label = "label_gateway_django"
    verbose_name = "Label gateway"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out
        from django.core import checks

        from .signals import revoke_on_logout
        from .views import check_settings

        user_logged_out.connect(revoke_on_logout, dispatch_uid="label_gateway_django.revoke")
        checks.register(check_settings)
