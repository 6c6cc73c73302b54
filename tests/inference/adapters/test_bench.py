"""`python -m inference bench --json` on the tiny bundle: every key is there with a sane value.

No timing thresholds here (timed assertions flake on shared machines); the numbers are in the README.
"""

from __future__ import annotations

import json
import math

KEYS = ("p50_ms", "p95_ms", "throughput_per_s", "overhead", "rss_steady_mb", "rss_growth_pct", "cold_start_s",
        "reference_ratio")


def test_bench_json_on_tiny_bundle(tiny_bundle, shared, capsys):
    from inference.adapters.cli import main

    rc = main(["bench", "--json", "--requests", "40", "--concurrency", "2", "--bundle", str(tiny_bundle),
               "--scenes", str(shared / "scenes")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for k in KEYS:
        assert isinstance(out[k], (int, float)) and math.isfinite(out[k]), k
    for k in ("p50_ms", "p95_ms", "throughput_per_s", "overhead", "rss_steady_mb", "cold_start_s", "reference_ratio"):
        assert out[k] > 0, k
    assert out["p95_ms"] >= out["stages_mixed_p95_ms"]["decode"]
    assert out["overhead"] >= 1.0  # end-to-end includes the model time
    assert out["rss_peak_mb"] >= out["rss_steady_mb"] > 10
    assert out["long_run"]["requests"] == 40
    assert out["sets"]["p50"] >= 1 and out["sets"]["mixed"] >= 1
    assert {"png", "webp", "gif"} <= set(out["sets"]["mixed_formats"])
    assert out["machine"]["cpus"] >= 1 and out["machine"]["cpu"]
    assert set(out["stages_p50_ms"]) >= {"decode", "detect", "crop", "embed", "classify", "annotate"}


def test_bench_refuses_missing_scenes(tiny_bundle, tmp_path, capsys):
    from inference.adapters.cli import main

    assert main(["bench", "--bundle", str(tiny_bundle), "--scenes", str(tmp_path / "nope")]) == 2
    assert "no scene pictures" in capsys.readouterr().err
