"""The server's Prometheus text exposition, read into {series: value}.

    parse(text) -> {'ringhttpd_requests_total{code="200"}': 12.0, ...}

Comments and lines whose value is not a number are left out.
"""


def parse(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out
