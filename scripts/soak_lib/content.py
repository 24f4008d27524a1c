"""The soak's document root: files with known versions, how they change, and the body checks.

Four kinds of file (scripts/soak.sh):

  atomic    replaced by rename(2) of a fully written temporary file, cycling through its
            versions (two of them the same length, so a mix cannot hide behind a length);
            a response must be one version whole, a range a slice of one version.
  inplace   truncated in place (ftruncate to a shorter length, later grown back with one
            pwrite) or rewritten in place (O_TRUNC, then 64 KiB writes). Every state is a
            prefix of one master content, so a body must be master[start:start+len]; a body
            cut short is acceptable only when the server then closes the connection.
  recreate  deleted, and after a short gap recreated (a complete temporary file linked into
            place) with its next version; 404 is acceptable, otherwise as atomic.
  static    never changes (index.html, and a large file for slow readers and resets).

Contents are deterministic (seeded by name and version), so every process of the soak
derives the same versions without passing bytes around.
"""
import hashlib
import os
import random
import time

SMALL, LARGE, HUGE = "small", "large", "huge"   # huge: only slow readers and resets


class FileSpec:
    """One file of the document root and the versions it may be served as."""

    def __init__(self, url, kind, sizes, size_class):
        self.url = url
        self.kind = kind
        self.size_class = size_class
        self.versions = [make_content(url, v, n) for v, n in enumerate(sizes)]
        self.expect(self.versions)

    def expect(self, versions):
        """Sets what the checker accepts (normally the versions written)."""
        self.expected = versions
        self.digests = {hashlib.sha1(v).digest() for v in versions}

    @property
    def master(self):
        return self.expected[0]

    @property
    def rel(self):
        return self.url.lstrip("/")

    # ---- checks (each returns None when the body is acceptable, else why not) ----

    def check_whole(self, body):
        """A complete 200 body."""
        if self.kind == "inplace":
            if len(body) > len(self.master):
                return f"{len(body)}-byte body is longer than the content ({len(self.master)})"
            if body != self.master[:len(body)]:
                return (f"{len(body)}-byte body is not the first {len(body)} bytes of the "
                        f"content: {describe_diff(body, self.master)}")
            return None
        if hashlib.sha1(body).digest() in self.digests:
            return None
        lengths = sorted({len(v) for v in self.expected})
        same = [i for i, v in enumerate(self.expected) if len(v) == len(body)]
        if not same:
            return f"{len(body)}-byte body matches no version length {lengths}"
        closest = max(same, key=lambda i: diff_at(body, self.expected[i]))
        return (f"{len(body)}-byte body equals no version of that length (versions {same}); "
                f"the closest, version {closest}, differs from offset "
                f"{diff_at(body, self.expected[closest])}")

    def check_prefix(self, body):
        """A 200 body cut short by a close: must be the start of some version."""
        if self.kind == "inplace":
            return self.check_whole(body)
        if any(v.startswith(body) for v in self.expected):
            return None
        return f"{len(body)}-byte short body is not the start of any version"

    def check_parts(self, parts):
        """206 parts [(first, last, total, data)], all from one version."""
        for first, last, total, data in parts:
            if last - first + 1 != len(data):
                return f"part {first}-{last} carries {len(data)} bytes"
        if self.kind == "inplace":
            totals = {p[2] for p in parts}
            if len(totals) != 1 or totals.pop() > len(self.master):
                return f"part totals {[p[2] for p in parts]} inconsistent (master {len(self.master)})"
            for first, last, _, data in parts:
                if self.master[first:last + 1] != data:
                    return f"bytes {first}-{last} are not the content's"
            return None
        for v in self.expected:
            if all(total == len(v) and v[first:last + 1] == data
                   for first, last, total, data in parts):
                return None
        ranges = ", ".join(f"{a}-{b}/{t}" for a, b, t, _ in parts)
        return f"parts {ranges} are not slices of one version"


def describe_diff(body, good):
    """Where `body` departs from `good` (same offsets): the differing span, and whether the
    foreign bytes there are zeros."""
    first = diff_at(body, good)
    last = len(body) - 1
    while last > first and body[last] == good[last]:
        last -= 1
    span = body[first:last + 1]
    differing = sum(1 for a, b in zip(span, good[first:last + 1]) if a != b)
    zeros = span.count(0)
    text = (f"bytes {first}-{last} differ ({differing} of {len(span)} in that span; "
            f"{zeros} of the span are zero; pages {first // 4096}-{last // 4096}, "
            f"offset in first page {first % 4096})")
    if zeros == len(span):
        # Seen with nginx `sendfile on` as well (not with it off): truncation zeroes the rest
        # of a page-cache folio that a pipe or socket buffer still references.
        text += ("; a zero-filled span from a truncation point: the file was truncated in "
                 "place while those bytes were in flight by zero-copy splice")
    return text


def diff_at(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def make_content(url, version, size):
    return random.Random(f"{url}#{version}").randbytes(size)


def build_specs():
    specs = [
        FileSpec("/a/small0.bin", "atomic", [3000, 3000, 5000, 700], SMALL),
        FileSpec("/a/small1.html", "atomic", [20000, 20000, 31000, 12000], SMALL),
        FileSpec("/a/big0.bin", "atomic", [400_000, 400_000, 600_000, 300_000], LARGE),
        FileSpec("/a/big1.bin", "atomic", [2_000_000, 2_000_000, 2_500_000, 1_500_000], LARGE),
        FileSpec("/t/small.bin", "inplace", [24_000], SMALL),
        FileSpec("/t/big.bin", "inplace", [1_500_000], LARGE),
        FileSpec("/r/small.bin", "recreate", [5000, 5000, 9000], SMALL),
        FileSpec("/r/big.bin", "recreate", [800_000, 800_000, 1_000_000], LARGE),
        FileSpec("/index.html", "static", [1200], SMALL),
        FileSpec("/s/huge.bin", "static", [8_000_000], HUGE),
    ]
    return {s.url: s for s in specs}


def plant_wrong_version(specs):
    """--plant-wrong-version: the checker expects a corrupted copy of every version of one
    file, so each complete response for it must be reported."""
    spec = specs["/a/small1.html"]
    planted = []
    for v in spec.versions:
        b = bytearray(v)
        b[len(b) // 2] ^= 0xFF
        planted.append(bytes(b))
    spec.expect(planted)
    return spec.url


# ---- writing the root ----

def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def populate(root, specs):
    for spec in specs.values():
        path = os.path.join(root, spec.rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, spec.versions[0])


class Mutator:
    """Changes the root's files; one call of step() does one change."""

    def __init__(self, root, tmp, specs, seed=1):
        self.root, self.tmp = root, tmp
        self.rng = random.Random(seed)
        self.current = {url: 0 for url in specs}
        self.truncated = {}   # inplace url -> True while shorter than its master
        self.atomic = [s for s in specs.values() if s.kind == "atomic"]
        self.inplace = [s for s in specs.values() if s.kind == "inplace"]
        self.recreate = [s for s in specs.values() if s.kind == "recreate"]
        self.counts = {"replaced by rename": 0, "truncated in place": 0,
                       "grown back in place": 0, "rewritten in place": 0,
                       "deleted and recreated": 0}
        self.serial = 0

    def path(self, spec):
        return os.path.join(self.root, spec.rel)

    def _temp_with(self, data):
        self.serial += 1
        tmp = os.path.join(self.tmp, f"v{self.serial}")
        write_file(tmp, data)
        return tmp

    def _next(self, spec):
        v = (self.current[spec.url] + 1) % len(spec.versions)
        self.current[spec.url] = v
        return spec.versions[v]

    def replace(self, spec):
        tmp = self._temp_with(self._next(spec))
        os.rename(tmp, self.path(spec))
        self.counts["replaced by rename"] += 1

    def truncate_or_rewrite(self, spec):
        path, master = self.path(spec), spec.versions[0]
        with open(path, "r+b") as f:
            if self.truncated.get(spec.url):
                size = os.fstat(f.fileno()).st_size
                os.pwrite(f.fileno(), master[size:], size)
                self.truncated[spec.url] = False
                self.counts["grown back in place"] += 1
            elif self.rng.random() < 0.6:
                os.ftruncate(f.fileno(), self.rng.randrange(len(master) // 4, len(master)))
                self.truncated[spec.url] = True
                self.counts["truncated in place"] += 1
            else:
                f.truncate(0)
                for off in range(0, len(master), 65536):
                    f.write(master[off:off + 65536])
                    f.flush()
                self.counts["rewritten in place"] += 1

    def delete_and_recreate(self, spec, gap):
        os.unlink(self.path(spec))
        time.sleep(gap)
        tmp = self._temp_with(self._next(spec))
        os.link(tmp, self.path(spec))
        os.unlink(tmp)
        self.counts["deleted and recreated"] += 1

    def step(self):
        r = self.rng.random()
        if r < 0.45:
            self.replace(self.rng.choice(self.atomic))
        elif r < 0.8:
            self.truncate_or_rewrite(self.rng.choice(self.inplace))
        else:
            self.delete_and_recreate(self.rng.choice(self.recreate), self.rng.uniform(0.05, 0.15))
