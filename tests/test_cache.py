"""The project cache's lock: two processes (make test's workers, two terminals) never build the same thing at
once; the one that waits says what it waits for; `mocap demo` holds it for the whole demo."""

from __future__ import annotations

import logging
import threading
import time

from mocap_studio.common.cache import file_lock


def _hold(name: str, entered: threading.Event, release: threading.Event, order: list[str]) -> threading.Thread:
    def run() -> None:
        with file_lock(name):
            order.append("first in")
            entered.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    return thread


def test_a_second_holder_waits_and_says_what_for(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path))
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()
    first = _hold("thing", entered, release, order)

    def second() -> None:
        with file_lock("thing", "another process builds the thing; waiting"):
            order.append("second in")

    with caplog.at_level(logging.INFO, logger="mocap_studio.common.cache"):
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.5)
        assert order == ["first in"]  # the second waits while the first holds the lock
        release.set()
        first.join(10)
        waiting.join(10)
    assert order == ["first in", "first out", "second in"]
    assert "another process builds the thing; waiting" in caplog.text
    # a free lock is taken at once, without a word
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mocap_studio.common.cache"), file_lock("thing", "never logged"):
        pass
    assert "never logged" not in caplog.text


def test_a_second_demo_waits_for_the_first(tmp_path, monkeypatch):
    import mocap_studio.demo as demo

    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path))
    ran: list[str] = []
    monkeypatch.setattr(demo, "_run_demo", lambda root, *args: ran.append(str(root)))
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()
    first = _hold("demo", entered, release, order)  # a demo already running on this cache
    second = threading.Thread(target=demo.run_demo, args=(tmp_path / "demo",))
    second.start()
    time.sleep(0.5)
    assert ran == []
    release.set()
    first.join(10)
    second.join(10)
    assert ran == [str(tmp_path / "demo")]
