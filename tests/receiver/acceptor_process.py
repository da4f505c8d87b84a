"""Accept events forever and print each key once `accept_event` returned.

Run as `python acceptor_process.py STORAGE_URL CONCURRENCY`; the durability test
kills it with SIGKILL and checks that every printed key is in the database.
"""

from __future__ import annotations

import asyncio
import sys

from kratos_webhooks.receiver.state import StateStore, StoredAnswer

ANSWER = StoredAnswer(202, b'{"status":"accepted"}')


async def accept_forever(store: StateStore, acceptor: int) -> None:
    number = 0

    while True:
        key = f"msg_{acceptor}_{number}"
        number += 1
        body = b'{"acceptor": %d, "number": %d}' % (acceptor, number)
        _, created = await store.accept_event(
            route="/hooks/crash",
            key=key,
            body=body,
            content_type="application/json",
            answer=ANSWER,
        )
        assert created
        # One write per line, shorter than PIPE_BUF, so a line is never torn.
        sys.stdout.write(key + "\n")
        sys.stdout.flush()


async def main(url: str, concurrency: int) -> None:
    store = StateStore.open(url)
    await store.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(accept_forever(store, n) for n in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
