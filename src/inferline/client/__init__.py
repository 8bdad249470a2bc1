"""inferline.client: a streaming client for inferline and any OpenAI-compatible server.

    from inferline.client import Client

    with Client("http://127.0.0.1:8080/v1", model="smollm2") as client:
        with client.stream(messages=[{"role": "user", "content": "Hi"}], max_tokens=64) as s:
            for delta in s:
                print(delta, end="", flush=True)
        print(s.usage, s.finish_reason, s.backend, s.ttft_s)

Bytes are read from the socket only when the loop asks for the next delta (no background reader,
no queue), so a slow consumer slows the server through TCP flow control. Budgets, retries before
the first token, opt-in resume, cancellation and four timeouts are described in docs/client.md;
the error tree is drawn in `inferline.client._exceptions`.
"""

from ._async import AsyncClient, AsyncStream
from ._config import DEFAULT_RETRY, DEFAULT_TIMEOUTS, Budget, Retry, Timeouts
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequest,
    BudgetExceeded,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    InferlineError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StreamError,
    TotalTimeout,
)
from ._models import Completion, Usage
from ._sync import Client, Stream

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequest",
    "Budget",
    "BudgetExceeded",
    "Client",
    "Completion",
    "ConnectTimeout",
    "FirstTokenTimeout",
    "IdleTimeout",
    "InferlineError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Retry",
    "ServerError",
    "ServiceUnavailable",
    "Stream",
    "StreamError",
    "Timeouts",
    "TotalTimeout",
    "Usage",
]

# Show the public names as inferline.client.X in reprs and tracebacks (httpx does the same).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
