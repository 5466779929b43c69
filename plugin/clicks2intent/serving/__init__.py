"""Online serving: request/response schemas, the per-worker engine behind ``bento/service.py``, and the
launcher that starts ``bentoml serve`` with the service's environment."""
