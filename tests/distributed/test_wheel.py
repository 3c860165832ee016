"""The package as a user installs it: a wheel, without the repository. Its recipes resolve by name from inside the
wheel, and `hf-unlearn train --accelerate_config multi_cpu` launches 2 CPU ranks through accelerate launch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..test_recipe import ROOT, _config

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (without dependencies: they are this environment's) into a folder
    of its own, which goes first on PYTHONPATH."""
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("hf_unlearn-*.whl")
    site = out / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return site


def _python(site: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_UNLEARN_LAUNCHED", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def test_the_wheel_carries_its_recipes_and_resolves_them_by_name(wheel_site, tmp_path):
    code = (
        "import hf_unlearn, sys\n"
        "from hf_unlearn.recipes import resolve_config, resolve_accelerate_config\n"
        "from hf_unlearn.scripts.unlearn import _first_pass, make_parser\n"
        "argv = ['--config', 'npo_tofu_lora']\n"
        "script, training, model = make_parser(_first_pass(argv).method).parse_args_and_config(argv)\n"
        "print(hf_unlearn.__file__)\n"
        "print(resolve_config('npo_tofu_lora'))\n"
        "print(resolve_accelerate_config('multi_cpu'))\n"
        "print(script.method, script.dataset_name, model.use_peft, model.lora_r, training.learning_rate)\n"
    )
    proc = _python(wheel_site, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    package, config, accelerate_config, parsed = proc.stdout.strip().splitlines()
    for path in (package, config, accelerate_config):
        assert path.startswith(str(wheel_site)), path  # from the wheel, not from the repository
    assert parsed == "npo tofu True 32 0.0001"
    listing = _python(wheel_site, tmp_path, "-m", "hf_unlearn.cli", "recipes")
    assert "npo_tofu_lora" in listing.stdout and "multi_cpu" in listing.stdout


def test_train_through_accelerate_multi_cpu_from_the_wheel(wheel_site, tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, evaluate=False)
    settings = yaml.safe_load(cfg.read_text())
    assert settings["max_steps"] == 2
    proc = _python(
        wheel_site,
        tmp_path,
        "-m",
        "hf_unlearn.cli",
        "train",
        "--config",
        str(cfg),
        "--accelerate_config",
        "multi_cpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "29561",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2 finished 2 steps" in proc.stdout and "rank 1/2 finished 2 steps" in proc.stdout
    assert (tmp_path / "run" / "model.safetensors").is_file()
