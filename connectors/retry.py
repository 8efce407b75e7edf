"""The one retry layer for vendor calls (tenacity). The vendor clients' own retry loops are off.

Retries `Transient` errors (which include `RateLimited`); waits exactly `Retry-After` when the vendor
sent one, otherwise exponential backoff with jitter. `Conflict` is not retried here: the processing
pass re-fetches and re-decides instead. After the last attempt the original error is raised.

Every wait here happens inside a worker thread (the embedded worker has two), so it stalls all other
tickets and the timers meanwhile. The bounds are therefore short: a Retry-After above `max_retry_after`
is not slept through at all - `RateLimited` leaves the connector at once and the pipeline re-queues the
ticket with that eta - and no call keeps retrying longer than `max_total_seconds`.

`ConnectorError.sent` across attempts: the error raised describes the whole call, not its last attempt.
Once one attempt ended with an unknown outcome (a read timeout, a 5xx: the vendor may have stored it),
a later attempt that was certainly refused (`sent=False`: 429, connect timeout) does not make the call
"not sent": the raised error then says `sent=None`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_random_exponential

from connectors.base import ConnectorError, RateLimited, Transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_total_seconds: float = 60.0  # never keep one worker task busier than this
    backoff_base: float = 0.5
    backoff_max: float = 15.0
    max_retry_after: float = 10.0  # a longer Retry-After is not slept through: the task is re-queued instead
    sleep: Callable[[float], None] = field(default=time.sleep)


DEFAULT_POLICY = RetryPolicy()


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after
        return backoff(state)

    return wait


def _retryable(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def check(error: BaseException) -> bool:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after <= policy.max_retry_after
        return isinstance(error, Transient)

    return check


def retrying(policy: RetryPolicy = DEFAULT_POLICY) -> Retrying:
    return Retrying(
        retry=retry_if_exception(_retryable(policy)),
        wait=_wait(policy),
        # stop_before_delay: no sleep that would end past the bound is started at all.
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_total_seconds),
        sleep=policy.sleep,
        reraise=True,
    )


def call_with_retry(fn: Callable[..., T], *args: Any, policy: RetryPolicy = DEFAULT_POLICY, **kwargs: Any) -> T:
    maybe_stored = False  # an earlier attempt may have reached the vendor and been stored

    def attempt() -> T:
        nonlocal maybe_stored
        try:
            return fn(*args, **kwargs)
        except ConnectorError as error:
            if maybe_stored:
                error.sent = None
            elif error.sent is not False:
                maybe_stored = True
            raise
        except BaseException:
            maybe_stored = True  # not ours to judge (e.g. a wrapper that stops the loop): unknown
            raise

    return retrying(policy)(attempt)


def request_never_sent(error: BaseException) -> bool:
    """Whether a `requests` exception proves that no byte of the request reached the server: the TCP
    connection (to the vendor or the proxy) was never established.

    - `ConnectTimeout`: the connect itself timed out (requests raises it only for urllib3's
      ConnectTimeoutError that is not a NewConnectionError) -> never sent.
    - `ConnectionError` wrapping urllib3's `MaxRetryError(reason=NewConnectionError)`: refused, host
      unreachable, name resolution failed (`NameResolutionError` is a NewConnectionError) -> never sent.
    - Any other `ConnectionError` (ProtocolError "Connection aborted", reset by peer, RemoteDisconnected:
      these happen after the request was written), `SSLError`, `ProxyError`, `ReadTimeout` -> False:
      the request may have been read and acted on, so the outcome is unknown.
    """
    if isinstance(error, requests.ConnectTimeout):
        return True
    if not isinstance(error, requests.ConnectionError) or isinstance(error, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return False
    from urllib3.exceptions import NewConnectionError

    cause: Any = error.args[0] if error.args else None
    cause = getattr(cause, "reason", cause)  # requests wraps urllib3's MaxRetryError, which names the cause
    return isinstance(cause, NewConnectionError)
