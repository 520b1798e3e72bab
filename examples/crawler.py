"""A crawler that mixes IO and CPU: fetch pages concurrently, parse them in worker processes.

Fetching is IO: the event loop keeps many requests in flight at once. Parsing HTML is CPU work
that holds the GIL: done on the event loop it would stall every fetch in flight, so it runs in a
procpool worker while the loop goes on fetching. One ``asyncio.TaskGroup`` holds the crawl: each
page's task fetches it, awaits its parse, and starts a task for each link not seen yet.

So that it runs anywhere, the script serves its own small web site on 127.0.0.1 (a thread with
``http.server``), crawls it from the first page, and checks what it found against what the site
holds. Run it with ``python examples/crawler.py [--pages 200] [--concurrency 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import procpool

WORDS = ("async", "await", "pool", "worker", "process", "event", "loop", "socket", "parse", "fetch", "page", "io")


# -- the parsing, run in the workers ---------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """What the parser extracts from one page."""

    title: str
    links: tuple[str, ...]
    words: Counter[str]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.links: list[str] = []
        self.words: Counter[str] = Counter()
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        else:
            self.words.update(word.lower() for word in data.split() if word.isalpha())


def parse_page(html: str) -> Page:
    """CPU-bound: parse one page's HTML (pure Python, so it holds the GIL throughout)."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return Page(parser.title, tuple(parser.links), parser.words)


# -- the web site it crawls ---------------------------------------------------------------------


def site_page(number: int, pages: int) -> tuple[str, Counter[str]]:
    """Page ``number`` of the test site, and the words it holds (to check the crawl against).

    Each page links to the next one, so every page can be reached from page 0, and to two
    others picked at random, so the crawl fans out and finds pages more than once.
    """
    rng = random.Random(number)
    text = [rng.choice(WORDS) for _ in range(3000)]
    links = {(number + 1) % pages, rng.randrange(pages), rng.randrange(pages)}
    anchors = "".join(f'<li><a href="/page/{link}">page {link}</a></li>' for link in sorted(links))
    paragraphs = "".join(f"<p>{' '.join(text[i : i + 50])}</p>" for i in range(0, len(text), 50))
    html = f"<html><head><title>Page {number}</title></head><body>{paragraphs}<ul>{anchors}</ul></body></html>"
    # The link texts ("page 7") are words on the page too.
    return html, Counter(text) + Counter("page" for _ in links)


@contextmanager
def serve_site(pages: int) -> Iterator[str]:
    """Serve the test site on a free port of 127.0.0.1 from a thread; yields its base URL."""
    site = {f"/page/{number}": site_page(number, pages)[0].encode() for number in range(pages)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass  # no line per request on stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-site")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# -- the crawler --------------------------------------------------------------------------------


async def crawl(base_url: str, start: str, pool: procpool.Pool, concurrency: int) -> dict[str, Page]:
    """Crawl the site from ``start``; returns every page reached, by path."""
    pages: dict[str, Page] = {}
    seen = {start}
    fetch_slots = asyncio.Semaphore(concurrency)  # at most this many requests in flight

    async with httpx.AsyncClient(base_url=base_url) as client, asyncio.TaskGroup() as crawl_group:

        async def visit(path: str) -> None:
            async with fetch_slots:
                response = await client.get(path)
            response.raise_for_status()
            page = await pool.run(parse_page, response.text)  # the loop keeps fetching meanwhile
            pages[path] = page
            for link in page.links:
                if link not in seen:
                    seen.add(link)
                    crawl_group.create_task(visit(link))

        crawl_group.create_task(visit(start))
    return pages


async def run(pages: int, concurrency: int, workers: int | None) -> bool:
    """Serve the site, crawl it, print a summary; True when the crawl found the whole site."""
    with serve_site(pages) as base_url:
        async with procpool.Pool(workers) as pool:
            started = time.perf_counter()
            found = await crawl(base_url, "/page/0", pool, concurrency)
            elapsed = time.perf_counter() - started

    expected = Counter[str]()
    for number in range(pages):
        expected += site_page(number, pages)[1]
    words = Counter[str]()
    for page in found.values():
        words += page.words
    print(f"crawled {len(found)} of {pages} pages in {elapsed:.2f} s with {pool.workers} parse workers")
    print(f"{words.total()} words; most common: {', '.join(w for w, _ in words.most_common(5))}")
    complete = len(found) == pages and words == expected
    print("all pages found and parsed correctly" if complete else "MISMATCH: the crawl did not find the whole site")
    return complete


def main(argv: Sequence[str] | None = None) -> int:
    """Run the crawl; returns the exit status (0 when the whole site was found)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=200, help="pages on the test site")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--workers", type=int, default=None, help="parse workers (default: one per CPU)")
    args = parser.parse_args(argv)
    return 0 if asyncio.run(run(args.pages, args.concurrency, args.workers)) else 1


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
