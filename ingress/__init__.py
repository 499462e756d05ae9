"""Ingress nodes: hold client connections, authenticate, validate, rate-limit, publish commands."""
