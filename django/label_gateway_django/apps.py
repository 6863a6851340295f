from django.apps import AppConfig


class LabelGatewayConfig(AppConfig):
    name = "label_gateway_django"
    label = "label_gateway_django"
    verbose_name = "Label gateway"

    def ready(self):
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.core import checks
        from django.db.models.signals import post_delete, post_save, pre_save

        from .checks import check_settings
        from .signals import note_user_change, revoke_on_logout, revoke_on_user_change

        user_logged_out.connect(revoke_on_logout, dispatch_uid="label_gateway_django.revoke")
        # A password change, a deactivation or a deletion ends the user's sessions in
        # Django; these end them on the gateway too (see signals.py).
        user_model = settings.AUTH_USER_MODEL
        pre_save.connect(
            note_user_change, sender=user_model, dispatch_uid="label_gateway_django.user_pre"
        )
        post_save.connect(
            revoke_on_user_change, sender=user_model, dispatch_uid="label_gateway_django.user_post"
        )
        post_delete.connect(
            revoke_on_user_change, sender=user_model, dispatch_uid="label_gateway_django.user_del"
        )
        checks.register(check_settings)
