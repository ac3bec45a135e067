"""The CLI's list plumbing: pages read ahead by a thread, and output written in chunks."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from server.cli import Refused
from server.cli_inventory import OUTPUT_CHUNK, ChunkedOutput, read_ahead


def test_read_ahead_gives_every_item_in_order() -> None:
    assert list(read_ahead(iter(range(1000)))) == list(range(1000))


def test_read_ahead_raises_the_sources_error_after_its_items() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise Refused("cannot reach the server")

    pages = read_ahead(source())
    assert [next(pages), next(pages)] == [1, 2]
    with pytest.raises(Refused):
        next(pages)


def test_closing_read_ahead_early_stops_its_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        n = 0
        try:
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    pages = read_ahead(endless())
    assert next(pages) == 0
    pages.close()
    assert closed.is_set()
    assert not any(t.name == "certforge-pages" for t in threading.enumerate())


def test_chunked_output_writes_everything_in_few_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ChunkedOutput()
    lines = [f"{n},row\n" for n in range(20_000)]
    for line in lines:
        out.write(line)
    out.flush()
    assert capsys.readouterr().out == "".join(lines)
    assert len("".join(lines)) > 2 * OUTPUT_CHUNK  # more than one chunk was written
