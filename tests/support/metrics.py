"""Reading a server's Prometheus metrics (`--metrics-port`) in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ServerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerProcess) -> Samples:
    """Every sample the server exposes, by name and labels."""
    url = f"http://127.0.0.1:{server.ready['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the server has not exposed it (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def calls(server: ServerProcess, service: str, method: str, code: str = "OK") -> float:
    """How many calls of `method` the server has finished with `code`."""
    return sample(scrape(server), "microstate_rpc_calls_total", service=service, method=method, code=code)
