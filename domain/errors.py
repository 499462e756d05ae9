"""Typed business errors; adapters map them to wire error codes."""


class DomainError(Exception):
    code = "bad_request"


class InvalidAmount(DomainError):
    pass


class InvalidRoom(DomainError):
    pass


class RoomForbidden(DomainError):
    code = "forbidden"


class InvalidRateLimitSpec(ValueError):
    pass


class PermanentFailure(Exception):
    """A command that can never succeed, however often it is retried: it goes to dead letters at once."""
