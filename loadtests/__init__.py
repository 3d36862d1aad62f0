"""Client-side performance of emnist-edge: Locust load tests with SLO gates, and benchmarks.

- ``python -m loadtests --host URL --profile slo|smoke|mixed|capacity --reports DIR``: a bounded
  headless Locust run against any host, judged by gates (``loadtests.gates``);
- ``python -m loadtests.local --profile ...`` (``make loadtest``, ``make loadtest-smoke``): the
  same against a local stack it starts and stops itself;
- ``python -m loadtests.report`` (``make bench``): every figure side by side, and the plot;
- ``python -m loadtests.http_bench``: closed-loop HTTP clients, dynamic batching off and on.
"""
