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

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_random_exponential

from connectors import telemetry
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


def retrying(policy: RetryPolicy = DEFAULT_POLICY, *,
             on_retry: Callable[[RetryCallState], None] | None = None) -> Retrying:
    return Retrying(
        retry=retry_if_exception(_retryable(policy)),
        wait=_wait(policy),
        before_sleep=on_retry,
        # stop_before_delay: no sleep that would end past the bound is started at all.
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_total_seconds),
        sleep=policy.sleep,
        reraise=True,
    )


def call_with_retry(fn: Callable[..., T], *args: Any, policy: RetryPolicy = DEFAULT_POLICY,
                    meter: tuple[str, str, str] | None = None, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` under `policy`. `meter` (vendor, method, path) counts each repeat in
    connectors.telemetry under the path's route template."""
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

    def count_retry(_state: RetryCallState) -> None:
        telemetry.vendor_retry(*meter)

    return retrying(policy, on_retry=count_retry if meter is not None else None)(attempt)
