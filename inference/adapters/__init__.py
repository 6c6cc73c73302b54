"""The recognition core's adapters: the ways in from outside, each over the data path of `inference/`.

- `cli.py`: `python -m inference` (whois, enroll, eval, characters, bench, serve, write-manifest);
- `api.py`: the HTTP API (aiohttp), the reference system's endpoint and ours;
- `bench.py`: `python -m inference bench`, speed and memory against the targets and the reference design
  (`reference_design.py`: the reference system's way of running the same models);
- `serve.py` + `wire.py`: the pipeline as a Ray Serve deployment, and what travels to it over HTTP.

Nothing in the data path imports these; they import it.
"""
