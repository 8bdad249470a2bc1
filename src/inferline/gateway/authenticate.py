"""authenticate: request headers -> Principal (the API key by hash, and its queue class). 401 / 400.

With no keys configured authentication is off and every request is `anonymous`. The priority class comes
from the `x-inferline-priority` header, else the key's `priority_class`, else `admission.default_class`.
"""

from __future__ import annotations

from inferline.config import AdmissionConfig
from inferline.errors import InvalidRequest
from inferline.limits import Limiter
from inferline.types import Scope

from .values import Principal


class Authenticator:
    def __init__(self, limiter: Limiter, admission: AdmissionConfig) -> None:
        self._limiter = limiter
        self._classes = admission.priority_classes
        self._default_class = admission.default_class

    def authenticate(self, scope: Scope) -> Principal:
        """The caller's Principal. Raises Unauthorized (401, never echoing the key) or InvalidRequest (400)."""
        authorization = priority = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-inferline-priority":
                priority = value
        key = self._limiter.authenticate(authorization)
        if priority is not None:
            name = priority.decode("latin-1").strip().lower()
        else:
            name = key.priority_class or self._default_class
        offset = self._classes.get(name)
        if offset is None:
            raise InvalidRequest(
                f"unknown priority class {name!r} in x-inferline-priority; known: {', '.join(sorted(self._classes))}",
                param="x-inferline-priority",
            )
        return Principal(key=key, priority_class=name, priority_offset_s=offset)
