"""Mirror health (webhook/edge/mirrors.py) with a probe that answers from a table and a
clock the test moves: a mirror is rewritten to only after it was seen answering, and only
for as long as the probe can know."""

from __future__ import annotations

import threading

from webhook.edge.mirrors import FAILED, LACKS_SECONDS, NOT_YET, MirrorHealth


class Probe:
    def __init__(self) -> None:
        self.answers: dict[str, bool] = {}
        self.asked: list[str] = []

    def __call__(self, host: str, timeout: float) -> bool:
        self.asked.append(host)
        return self.answers.get(host, False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def health(hosts: list[str]) -> tuple[MirrorHealth, Probe, Clock]:
    probe, clock = Probe(), Clock()
    return MirrorHealth(lambda: hosts, probe, interval=2.0, clock=clock), probe, clock


def test_a_mirror_is_down_until_it_was_seen_answering() -> None:
    # Right after start, and right after the ConfigMap adds a mirror: no probe has run yet.
    hosts = ["mirror.example.com"]
    mirrors, probe, _ = health(hosts)
    assert mirrors.down() == {"mirror.example.com": NOT_YET}
    probe.answers["mirror.example.com"] = True
    mirrors.check_once()
    assert mirrors.down() == {}
    hosts.append("new.example.com")  # added by a new configuration
    assert mirrors.down() == {"new.example.com": NOT_YET}


def test_a_new_mirror_wakes_the_probe_loop_at_once() -> None:
    hosts: list[str] = []
    probe = Probe()
    mirrors = MirrorHealth(lambda: hosts, probe, interval=3600.0)
    thread = threading.Thread(target=mirrors.run, daemon=True)
    thread.start()
    try:
        hosts.append("mirror.example.com")
        probe.answers["mirror.example.com"] = True
        mirrors.down()  # an admission meets a mirror the loop has not probed
        for _ in range(100):
            if not mirrors.down():
                break
            threading.Event().wait(0.02)
        assert mirrors.down() == {}
    finally:
        mirrors.stop()
        thread.join(5)


def test_one_failed_probe_is_enough_and_one_good_probe_brings_it_back() -> None:
    mirrors, probe, _ = health(["mirror.example.com"])
    probe.answers["mirror.example.com"] = True
    mirrors.check_once()
    probe.answers["mirror.example.com"] = False
    mirrors.check_once()
    assert mirrors.down() == {"mirror.example.com": FAILED}
    probe.answers["mirror.example.com"] = True
    mirrors.check_once()
    assert mirrors.down() == {}


def test_an_answer_the_probe_loop_has_not_renewed_is_not_trusted() -> None:
    mirrors, probe, clock = health(["mirror.example.com"])
    probe.answers["mirror.example.com"] = True
    mirrors.check_once()
    clock.now += mirrors.fresh - 0.1
    assert mirrors.down() == {}
    clock.now += 0.2  # the loop stalled: no probe since
    assert "has not been probed for" in mirrors.down()["mirror.example.com"]


def test_mirrors_are_probed_at_the_same_time() -> None:
    # A mirror that hangs must not hold the others' probes back (their answers would age).
    hosts = ["slow.example.com", "fast.example.com"]
    fast_asked = threading.Event()

    def probe(host: str, timeout: float) -> bool:
        if host == "slow.example.com":
            # Probed one after the other, the fast mirror would only be asked after this.
            return not fast_asked.wait(timeout)
        fast_asked.set()
        return True

    mirrors = MirrorHealth(lambda: hosts, probe)
    mirrors.check_once()
    assert mirrors.down() == {"slow.example.com": FAILED}


def test_a_mirror_that_lacked_an_image_its_registry_has_is_down_for_a_while() -> None:
    # It answers /v2/ all along (it lost its upstream): only time ends it.
    mirrors, probe, clock = health(["mirror.example.com"])
    probe.answers["mirror.example.com"] = True
    mirrors.check_once()
    mirrors.lacks("mirror.example.com", "docker.io/library/web:1.0")
    clock.now += 3
    mirrors.check_once()
    assert mirrors.down() == {
        "mirror.example.com": "lacked docker.io/library/web:1.0, which its registry has, 3 s ago"
    }
    clock.now += LACKS_SECONDS
    mirrors.check_once()
    assert mirrors.down() == {}
