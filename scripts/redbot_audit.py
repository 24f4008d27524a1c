#!/usr/bin/env python3
"""REDbot audit of a live HTTP server.

Runs REDbot (https://redbot.org, PyPI package `redbot`) through its Python API against a list of
requests on one server, prints every note REDbot makes about each response (including the notes
on its own follow-up requests: conditional, range and gzip negotiation), and fails if any note at
WARN or BAD level is not in ALLOWED below.

Usage:
    redbot_audit.py BASE_URL --check PATH [-H 'Name: value']... [--check PATH ...]...

Each `--check` starts a request (GET BASE_URL + PATH); the `-H` options after it add request
headers to that request. In a header value, `{etag}` stands for the ETag of a plain GET of the
same path, fetched just before the check, so a revalidation can be audited against any server.

Exit status:
    0  every WARN/BAD note is allowed (or redbot is not installed: one line starting with
       "redbot audit: skipped:" is printed, and nothing is checked)
    1  at least one WARN/BAD note is not allowed (listed at the end as "NOT ALLOWED")
    2  bad usage, or a request REDbot could not complete (listed as "FETCH ERROR")
"""

import argparse
import importlib
import sys
import urllib.error
import urllib.request
from configparser import ConfigParser
from typing import Any, Callable, List, Optional, Tuple

SKIP_LINE = "redbot audit: skipped: redbot is not installed (pip install redbot)"

# The WARN/BAD notes accepted: REDbot note id (the note's class name), the responses it is
# accepted on (a test of REDbot's HttpResponseLinter), and why. Only notes that nginx 1.22 (etag
# on, gzip_static on, gzip_vary on, `add_header Cache-Control max-age=60`) gets for the same
# request belong here: anything else is a finding about the server, not about the audit.
ALLOWED: List[Tuple[str, Callable[[Any], bool], str]] = [
    (
        "PARTIAL_WITHOUT_RANGE",
        lambda response: response.status_code == 206
        and "multipart/byteranges" in response.headers.parsed.get("content-type", ("",))[0],
        "a multi-range 206 is multipart/byteranges, whose Content-Range headers are in the parts "
        "(RFC 9110 §14.6); REDbot does not parse the parts and says the same of nginx",
    ),
]

# Upper bound on the whole audit; REDbot's own client gives up on a connection after 30 s and on
# a silent response after 60 s.
DEADLINE_S = 90

Check = Tuple[str, List[Tuple[str, str]]]


class StartCheck(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        namespace.checks.append((values, []))


class AddHeader(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if not namespace.checks:
            parser.error(f"{option_string} {values!r} before any --check")
        name, sep, value = values.partition(":")
        if not sep or not name.strip():
            parser.error(f"header {values!r} is not 'Name: value'")
        namespace.checks[-1][1].append((name.strip(), value.strip()))


def parse_args(argv: List[str]) -> Tuple[str, List[Check]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.set_defaults(checks=[])
    parser.add_argument("base", help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--check", action=StartCheck, metavar="PATH", help="a path to audit")
    parser.add_argument(
        "-H", "--header", action=AddHeader, metavar="'NAME: VALUE'", help="request header"
    )
    args = parser.parse_args(argv)
    if not args.checks:
        parser.error("nothing to check: give at least one --check PATH")
    return args.base.rstrip("/"), args.checks


def etag_of(url: str) -> str:
    "The ETag of a plain GET of `url` (redirects not followed, error statuses accepted)."

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=30) as response:
            headers = response.headers
    except urllib.error.HTTPError as err:
        headers = err.headers
    etag = headers.get("ETag")
    if etag is None:
        raise SystemExit(f"redbot audit: {url} has no ETag to revalidate with")
    return etag


def resolve_headers(url: str, headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    if not any("{etag}" in value for _, value in headers):
        return headers
    etag = etag_of(url)
    return [(name, value.replace("{etag}", etag)) for name, value in headers]


def run_redbot(base: str, checks: List[Check]) -> List[Tuple[str, List[Tuple[str, str]], object]]:
    "Runs every check concurrently in one event loop; returns (path, headers, HttpResource)."
    import thor
    from redbot.resource import HttpResource

    parser = ConfigParser()
    parser.read_dict({"redbot": {"enable_local_access": "True"}})
    config = parser["redbot"]

    runs = []
    pending = set()
    for path, headers in checks:
        url = base + path
        headers = resolve_headers(url, headers)
        resource = HttpResource(config)
        resource.set_request(url, headers=headers)
        runs.append((path, headers, resource))
        pending.add(id(resource))

        def done(resource: HttpResource = resource) -> None:
            pending.discard(id(resource))
            if not pending:
                thor.stop()

        resource.once("check_done", done)

    def give_up() -> None:
        print(f"redbot audit: gave up after {DEADLINE_S} s", flush=True)
        for _, _, resource in runs:
            resource.stop()
        thor.stop()

    timer = thor.schedule(DEADLINE_S, give_up)
    for _, _, resource in runs:
        resource.check()
    if pending:
        thor.run()
    timer.delete()
    return runs


def all_notes(resource) -> List[Tuple[str, object]]:  # type: ignore[no-untyped-def]
    """The notes on the response and on REDbot's follow-up requests, each with where it came
    from, subnotes flattened; notes a follow-up also put on the main response appear once."""
    found: List[Tuple[str, object]] = []
    main = list(resource.response.notes)
    for note in main:
        found.append(("", note))
    for check_id, sub in resource.subreqs.items():
        if not sub.fetch_started:
            continue
        for note in getattr(sub.response, "notes", []):
            if note not in main:
                found.append((check_id, note))
    flat: List[Tuple[str, object]] = []
    for origin, note in found:
        flat.append((origin, note))
        for subnote in note.subnotes:
            flat.append((origin, subnote))
    return flat


def allowed_because(note_id: str, response: Any) -> Optional[str]:
    "Why `note_id` is accepted on `response`, or None if it is not."
    for allowed_id, applies, reason in ALLOWED:
        if allowed_id == note_id and applies(response):
            return reason
    return None


def report(runs) -> int:  # type: ignore[no-untyped-def]
    from httplint.note import levels

    failing: List[str] = []
    broken: List[str] = []
    for path, headers, resource in runs:
        label = path + "".join(f" [{name}: {value}]" for name, value in headers)
        response = resource.response
        print(f"=== {label}")
        if response.status_code is None or not response.complete:
            why = resource.fetch_error.desc if resource.fetch_error else "incomplete response"
            broken.append(f"FETCH ERROR {label}: {why}")
        if response.status_code is not None:
            print(f"    HTTP/{response.version} {response.status_code_str} {response.status_phrase}")
            for name, value in response.headers.text:
                print(f"    {name}: {value}")
        for origin, note in all_notes(resource):
            note_id = type(note).__name__
            where = f" (in the {origin} request)" if origin else ""
            level = note.level.name
            line = f"{level:5} {note_id}{where}: {note.summary}"
            if note.level in (levels.WARN, levels.BAD):
                reason = allowed_because(note_id, response)
                if reason is None:
                    failing.append(f"NOT ALLOWED {label}: {line}")
                else:
                    line += f"  [allowed: {reason}]"
            print(f"  {line}")
    print()
    for line in broken + failing:
        print(line)
    if broken:
        return 2
    if failing:
        return 1
    print(f"redbot audit: ok ({len(runs)} requests, no WARN or BAD note outside the allow-list)")
    return 0


def main(argv: List[str]) -> int:
    base, checks = parse_args(argv)
    try:
        importlib.import_module("redbot")
    except ImportError:
        print(SKIP_LINE, flush=True)
        return 0
    runs = run_redbot(base, checks)
    return report(runs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
