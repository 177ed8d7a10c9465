"""The mirror layer through real sockets: shadow copies and their percentages."""

from __future__ import annotations

import time

from ..helpers import vs
from .support import client, to


def test_mirror_sends_a_copy_and_the_caller_sees_only_the_primary(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "mirror": {"host": "reviews", "subset": "v2"},
                                       "mirrorPercentage": {"value": 100}}])])
    before = len(ups["v2"].requests)
    with client(port) as c:
        assert c.post("http://reviews:9080/m", content=b"abc").json()["name"] == "reviews-v1"
    for _ in range(500):
        if len(ups["v2"].requests) > before:
            break
        time.sleep(0.02)
    copy = ups["v2"].requests[-1]
    assert copy["url"] == "/m" and copy["body_len"] == 3 and copy["headers"]["host"] == "reviews:9080"


def test_mirror_percentage_zero_sends_nothing(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "mirror": {"host": "reviews", "subset": "v3"},
                                       "mirrorPercentage": {"value": 0}}])])
    before = len(ups["v3"].requests)
    with client(port) as c:
        for _ in range(5):
            c.get("http://reviews:9080/")
        c.get("http://reviews:9080/delay/0.1")
    assert len(ups["v3"].requests) == before
