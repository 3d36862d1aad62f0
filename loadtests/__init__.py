"""The load test of emnist-edge: a client of the app, like any other, with SLO gates.

It talks HTTP and blob storage only and imports nothing of the app (``shared``, ``functions``,
``model``) nor of this repository's local stand-ins, benchmarks or tests
(``tests/unit/test_loadtests_client.py`` checks): it runs against the deployed app with nothing
but ``loadtests/requirements.txt`` (no torch). What it needs to know of the app comes from the
environment (``loadtests.settings``: the function key, the storage account and containers).

- ``python -m loadtests --host URL --profile slo|smoke|mixed|capacity --reports DIR``: a bounded
  headless Locust run against any host (``loadtests.locustfile``), judged by gates
  (``loadtests.gates``);
- its inputs: characters drawn with a pen (``loadtests.corpus``), request bodies built from
  them (``loadtests.payloads``), and every answer checked down to the label
  (``loadtests.checks``).

The same against a local stack started for it (``make loadtest``), and the in-process
benchmarks (``make bench``), are in ``bench``.
"""
