# The Django test app (tests/django_project) as the demo shop of docker-compose.yml: the
# session check and regeneration views of label_gateway_django, a login page and a landing
# page with a label link. Test settings: for local runs only, never deploy them.
# Built from the repository root: docker compose -f deploy/docker-compose.yml build
FROM python:3.12-slim
COPY django /src/django
RUN pip install --no-cache-dir "Django>=5.0,<6" /src/django
COPY tests/django_project /app
WORKDIR /app
ENV LABEL_GATEWAY_TEST_DB=/data/db.sqlite3 \
    PYTHONUNBUFFERED=1
RUN mkdir -p /data
EXPOSE 8000
# Migrate, create the demo user (DJANGO_SUPERUSER_* variables; kept if it exists), serve.
CMD ["sh", "-c", "python manage.py gateway_setup && (python manage.py createsuperuser --noinput 2>/dev/null || true) && exec python manage.py runserver 0.0.0.0:8000 --noreload"]
