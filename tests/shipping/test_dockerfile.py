"""No Docker engine runs in CI, so check statically that the image gets everything the bot needs:
every file the default bundle loads, and every package, is COPY'd and not excluded by .dockerignore."""

import fnmatch
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copied_sources() -> list[str]:
    out = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if m:
            out += [s.rstrip("/") for s in m.group(1).split()]
    return out


def ignored(rel: str) -> bool:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines() if r.strip() and not r.startswith("#")]
    hit = False
    for rule in rules:
        neg = rule.startswith("!")
        pat = rule.lstrip("!").rstrip("/")
        parts = rel.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pat) or fnmatch.fnmatch("/".join(parts[:i]), "**/" + pat)
               for i in range(1, len(parts) + 1)) or fnmatch.fnmatch(rel, pat):
            hit = not neg
    return hit


def in_image(rel: str) -> bool:
    return not ignored(rel) and any(rel == s or rel.startswith(s + "/") for s in copied_sources())


def test_default_bundle_files_are_in_the_image():
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    needed = ["models/manifest.json"]
    for section in ("detector", "encoder", "classifier"):
        if "file" in manifest.get(section, {}):
            needed.append("models/" + manifest[section]["file"])
    needed.append((Path("models") / manifest["labels"]).as_posix().replace("models/../", ""))
    missing = [rel for rel in needed if not in_image(rel)]
    assert not missing, f"not copied into the image: {missing}"


def test_code_is_in_the_image_and_tests_are_not():
    for rel in ("bot.py", "inference/pipeline.py", "cogs/recognition.py", "service/storage.py"):
        assert in_image(rel), rel
    assert not in_image("tests/conftest.py") and ignored(".env") and not ignored(".env.example")


def test_a_copied_env_example_keeps_the_health_check_working():
    """compose's env_file would let `HEALTH_FILE=` in a copied .env.example override the image's value and turn
    the heartbeat off (the container then never becomes healthy): the example leaves it unset, compose sets it
    after env_file, and the HEALTHCHECK falls back to the image's path."""
    env = (ROOT / ".env.example").read_text().splitlines()
    assert not any(line.strip().startswith("HEALTH_FILE=") for line in env)
    compose = (ROOT / "compose.yaml").read_text()
    assert "HEALTH_FILE: /tmp/crystal-eyes.health" in compose.split("environment:")[1].split("volumes:")[0]
    docker = (ROOT / "Dockerfile").read_text()
    assert "os.environ.get('HEALTH_FILE') or '/tmp/crystal-eyes.health'" in docker


def test_installs_and_starts_are_quiet():
    """No build-backend wall on install and no onnxruntime telemetry warning at start in a read-only container
    (telemetry off in the image and in code). The license is an SPDX string (a TOML table drew ~80 lines of
    deprecation); the backend is hatchling, because setuptools >= 84 prints a "be careful with folders" warning
    box on every editable install (`make test`, `make run`), in every editable mode, compat and strict too."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert project["build-system"]["build-backend"] == "hatchling.build"
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["only-include"]
    assert sorted(shipped) == ["bot.py", "cogs", "inference", "service"]
    assert "setuptools" not in (ROOT / "pyproject.toml").read_text()
    assert "ORT_DISABLE_TELEMETRY=1" in (ROOT / "Dockerfile").read_text()


def test_sessions_turn_telemetry_off(tiny_bundle, monkeypatch):
    import os

    from inference.bundle import make_session

    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    make_session(tiny_bundle / "encoder.onnx", 1)
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"


def test_compose_serves_the_http_api_on_loopback():
    compose = (ROOT / "compose.yaml").read_text()
    api = compose.split("\n  api:\n")[1].split("\nvolumes:")[0]
    assert '"127.0.0.1:8080:8080"' in api and '"serve", "--host", "0.0.0.0"' in api and "healthz" in api
    assert "chara.json" in (ROOT / ".dockerignore").read_text().splitlines()[0]


def test_the_image_and_ci_have_the_label_fonts():
    assert "fonts-wqy-microhei" in (ROOT / "Dockerfile").read_text()
    assert "fonts-wqy-microhei" in (ROOT / ".ci" / "run").read_text()


def test_the_scale_profile_wires_database_service_and_shards():
    """`docker compose --profile scale up`: PostgreSQL and the recognition service (its image with the serve
    extra) each have a health check the shards wait for; every shard uses both and runs its own shard id."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    scale = {name: s for name, s in services.items() if "scale" in s.get("profiles", [])}
    assert set(scale) == {"db", "inference", "shard0", "shard1"}
    assert "serve" in scale["inference"]["build"]["args"]["EXTRAS"] and "ARG EXTRAS" in (ROOT / "Dockerfile").read_text()
    assert "inference.adapters.serve" in scale["inference"]["command"] and "healthz" in str(scale["inference"]["healthcheck"])
    assert "pg_isready" in str(scale["db"]["healthcheck"])
    ids = set()
    for name in ("shard0", "shard1"):
        env, needs = scale[name]["environment"], scale[name]["depends_on"]
        assert env["DATABASE_URL"].startswith("postgresql://") and env["INFERENCE_URL"] == "http://inference:8000"
        assert {k: v["condition"] for k, v in needs.items()} == {"db": "service_healthy", "inference": "service_healthy"}
        ids.add(env["SHARD_IDS"])
    assert ids == {"0", "1"} and services["bot"]["volumes"] == ["crystal-eyes-data:/data"]


def test_every_package_is_installed_and_stubbed_for_the_dependency_layer():
    """pyproject ships every top-level package (hatchling takes each folder whole, subpackages included) and the
    Dockerfile's dependency layer, which installs only pyproject.toml, stubs each one."""
    import tomllib

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "training", "tools"}  # not the bot's
    assert not in_image("tools/bench_remote.py")  # the tools drive the bot from above; the image leaves them out
    assert tops <= set(shipped["only-include"]), f"pyproject ships no {sorted(tops - set(shipped['only-include']))}"
    run = re.search(r"RUN mkdir -p (.+?)pip install", (ROOT / "Dockerfile").read_text(), re.S).group(1)
    for top in tops:
        assert f"{top}/__init__.py" in run, f"the dependency layer does not stub {top}"
