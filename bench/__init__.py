"""Benchmarks of lazyreg against the CNCF distribution registry, on loopback, in one run.

`python -m bench.run` starts the servers (`bench.servers`), measures every
scenario (`bench.scenarios`) for lazyreg and its peer side by side with the
same clients (`bench.clients`), and writes `bench/RESULTS.md` and
`bench/results.png` (`bench.report`); `--quick` is the CI variant and writes
under `bench/out/`. `python -m bench.profile SCENARIO` replays one scenario's
load against lazyreg under py-spy and prints where the server's time goes.
"""
