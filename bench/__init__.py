"""Performance of emnist-edge on this machine: in-process benchmarks and the local stack under
load. Never deployed (``.funcignore`` is an allow-list), and free to use the app's own code,
the local stand-ins (``local``) and the load test's client (``loadtests``).

- ``python -m bench.report`` (``make bench``): every figure side by side, and the plot
  (``bench.plot``);
- ``python -m bench.http_clients``: closed-loop HTTP clients against local servers, dynamic
  batching (or telemetry) off and on;
- ``python -m bench.reference``: the reference server the HTTP figures are set against (bare
  FastAPI, naive crop and resize, a model of EdgeCNN's architecture);
- ``python -m bench.preprocess`` (in ``make bench``): preprocessing's time stage by stage
  (decode, grey, reduce, background, ink, normalize) for drawings and photos;
- ``python -m bench.batch``: batch throughput through Azurite, and a large batch's peak memory;
- ``python -m bench.hostile`` (``make bench-hostile``): what the costliest inputs within the
  limits cost (the inputs: ``bench.payloads``, which the hostile-input tests share);
- ``python -m bench.loadtest --profile slo|smoke|mixed|capacity`` (``make loadtest``,
  ``make loadtest-smoke``, ``make loadtest-capacity``): the load test (``python -m loadtests``)
  against a local server, with Azurite and the poller for the batch user, started and stopped
  around it.
"""
