"""The batching log handler: INFO waits for the flusher, problems never wait."""

from __future__ import annotations

import io
import json
import logging
import time

from webhook.edge.logs import FLUSH_SECONDS, BatchingHandler, JsonLineFormatter


def _logger(stream: io.StringIO) -> tuple[logging.Logger, BatchingHandler]:
    handler = BatchingHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler


def test_without_a_flusher_every_line_is_written_at_once() -> None:
    stream = io.StringIO()
    logger, _ = _logger(stream)
    logger.info("one %s", "line")
    line = json.loads(stream.getvalue())
    assert line["message"] == "one line"
    assert line["level"] == "INFO"


def test_info_waits_for_the_flusher_and_a_warning_takes_everything_out() -> None:
    stream = io.StringIO()
    logger, handler = _logger(stream)
    handler.start_flusher()
    logger.info("held")
    assert stream.getvalue() == ""
    logger.warning('a "quoted"\nproblem')
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["message"] for x in lines] == ["held", 'a "quoted"\nproblem']
    logger.info("later")
    deadline = time.monotonic() + 10 * FLUSH_SECONDS
    while "later" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 4)
    assert "later" in stream.getvalue()


def test_a_value_that_is_not_utf8_still_makes_one_line() -> None:
    stream = io.StringIO()
    logger, _ = _logger(stream)
    logger.info("image %s", "a\ud800b")
    assert len(stream.getvalue().splitlines()) == 1
