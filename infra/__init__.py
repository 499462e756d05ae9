"""Adapters shared by ingress and workers: settings, PostgreSQL, RabbitMQ, Redis, logging."""
