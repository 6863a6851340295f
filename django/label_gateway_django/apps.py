from django.apps import AppConfig


class LabelGatewayConfig(AppConfig):
    name = "label_gateway_django"
    label = "label_gateway_django"
    verbose_name = "Label gateway"
