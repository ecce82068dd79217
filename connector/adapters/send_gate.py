"""What every sender to the endpoint shares: the Retry-After hold and the halt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class SendGate:
    """What every sender to the endpoint shares: the Retry-After hold and the auth halt.

    While throttled, nobody sends until the time is up. While halted, only one sender
    (the prober) sends; the others wait, and one of them takes over probing if the prober
    goes away (its batch was cancelled by a revoke or shutdown).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        poll_s: float = 0.2,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self._throttle_until = 0.0
        self.halted = False
        self._prober: object | None = None

    def throttled(self) -> bool:
        return self._clock() < self._throttle_until

    def throttle(self, seconds: float) -> None:
        self._throttle_until = max(self._throttle_until, self._clock() + seconds)

    async def wait(self, sender: object) -> None:
        """Return when ``sender`` may send."""
        while True:
            if self.halted and self._prober is not sender:
                if self._prober is None:
                    self._prober = sender  # the prober went away: take over
                    continue
                await self._sleep(self._poll_s)
                continue
            remaining = self._throttle_until - self._clock()
            if remaining > 0:
                await self._sleep(remaining)
                continue
            return

    def halt(self, sender: object) -> None:
        if not self.halted:
            self.halted = True
            self._prober = sender

    def reopen(self) -> None:
        self.halted = False
        self._prober = None

    def leave(self, sender: object) -> None:
        if self._prober is sender:
            self._prober = None
