"""Request ids: ``req_`` + a ULID, unique and time-ordered, whether drawn one at a time
(``new_request_id``) or from the request path's pool (``RequestIds``)."""

from __future__ import annotations

import os
import re
import time

from sluice.base.clock import RequestIds, new_request_id

ULID = re.compile(r"req_[0-9A-HJKMNP-TV-Z]{26}")


def _ms(request_id: str) -> int:
    value = 0
    for char in request_id[4:14]:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    return value


def test_pooled_ids_are_ulids_unique_and_carry_the_time() -> None:
    ids = RequestIds()
    before = time.time_ns() // 1_000_000
    drawn = [ids() for _ in range(2_000)]  # several pools
    after = time.time_ns() // 1_000_000
    assert all(ULID.fullmatch(i) for i in drawn)
    assert len(set(drawn)) == len(drawn)
    assert all(before <= _ms(i) <= after for i in drawn)
    assert ULID.fullmatch(new_request_id()) and before <= _ms(new_request_id())


def test_random_characters_are_spread_over_the_alphabet() -> None:
    ids = RequestIds()
    chars = "".join(ids()[14:] for _ in range(4_000))
    counts = [chars.count(c) for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ"]
    assert min(counts) > 0.8 * len(chars) / 32  # uniform: 2,000 expected each


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids = RequestIds()
    ids()  # the parent holds a pool now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, "".join(ids() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 10_000).decode()
    os.close(read)
    parent = "".join(ids() for _ in range(8))
    assert [child[i + 14 : i + 30] for i in range(0, len(child), 30)] != [
        parent[i + 14 : i + 30] for i in range(0, len(parent), 30)
    ]
