"""What a launched notebook (Colab, Binder) needs: the setup cell in every chapter, and a wheel that
carries the shipped weights and the explorer's JavaScript."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from book.setup_cell import TAG, setup_source

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_starts_with_the_current_setup_cell(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code_cells = [c for c in cells if c["cell_type"] == "code"]
    first = code_cells[0]
    assert TAG in first["metadata"].get("tags", []), f"{notebook.name}: run python book/setup_cell.py"
    assert "".join(first["source"]) == setup_source(), f"{notebook.name}: run python book/setup_cell.py"
    assert sum(TAG in c["metadata"].get("tags", []) for c in code_cells) == 1


def test_the_setup_cell_does_nothing_where_gan_utils_is_installed():
    result = subprocess.run(
        [sys.executable, "-c", setup_source()], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_the_setup_cell_clones_the_repository_where_gan_utils_is_missing(tmp_path):
    """Where gan_utils is missing (Colab), the cell clones the repository once and installs the clone,
    so the benchmark results beside the library are there too. A local repository stands in for
    GitHub and pip is only recorded, so nothing is downloaded."""
    origin = tmp_path / "origin"
    (origin / "benchmarks" / "results").mkdir(parents=True)
    (origin / "benchmarks" / "results" / "toy_modes.json").write_text("{}\n")
    (origin / "gan_utils").mkdir()
    (origin / "gan_utils" / "__init__.py").write_text("CLONED = True\n")
    git = ["git", "-C", str(origin), "-c", "user.name=book", "-c", "user.email=book@example.org"]
    for command in (["init", "--quiet"], ["add", "."], ["commit", "--quiet", "-m", "results"]):
        subprocess.run([*git, *command], check=True, timeout=60)
    script = (
        "import importlib.util, subprocess, sys\n"
        "importlib.util.find_spec = lambda name, *args: None  # as on Colab: no gan_utils\n"
        "real_run, calls = subprocess.run, []\n"
        "def run(command, **kwargs):\n"
        "    calls.append(command)\n"
        "    return real_run(command, **kwargs) if command[0] == 'git' else None\n"
        "subprocess.run = run\n"
        + setup_source(f"file://{origin}")
        + "\nimport gan_utils\nassert gan_utils.CLONED  # the clone's package, importable in this process\n"
        + "print([c[0] if c[0] == 'git' else ' '.join(c[1:]) for c in calls], sys.path[0])\n"
    )
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home)}
    clone = home / "gan-book"
    for expected_git_calls in (1, 0):  # the second run finds the clone and does not clone again
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                             timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("'git'") == expected_git_calls
        assert f"-m pip install --quiet -e {clone}" in run.stdout and run.stdout.strip().endswith(str(clone))
        assert (clone / "benchmarks" / "results" / "toy_modes.json").is_file()


def test_the_wheel_ships_weights_and_javascript_and_works_outside_the_repository(tmp_path):
    """Build the wheel, install it (not editable) into a fresh virtual environment outside the
    repository, and from there run chapter 0's imports and load the shipped dcgan-mnist. The new
    environment borrows torch and the other dependencies from this one (a .pth file), so nothing is
    downloaded; gan_utils itself comes only from the wheel."""
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    build = subprocess.run(
        [*pip_wheel, "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("gan_utils-*.whl")
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    ask_site = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    fresh_site = subprocess.run(
        [python, "-c", ask_site], capture_output=True, text=True, check=True
    ).stdout.strip()
    fresh_site = Path(fresh_site)
    (fresh_site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet"]
    install = subprocess.run([*pip_install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    script = (
        "import gan_utils, torch, torchvision\n"
        "from gan_utils import data, viz, pretrained, widgets\n"
        "from pathlib import Path\n"
        f"assert gan_utils.__file__.startswith({str(fresh_site)!r}), gan_utils.__file__\n"
        "G = pretrained.load_pretrained('dcgan-mnist')\n"
        "print(G(torch.zeros(2, G.latent_dim)).shape)\n"
        "print(sorted(p.name for p in (Path(widgets.__file__).parent / 'static').glob('*.js')))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "torch.Size([2, 1, 28, 28])" in run.stdout and "latent_explorer.js" in run.stdout


def test_binder_pins_the_same_library_versions_as_the_repository():
    def pins(path):
        lines = (REPO / path).read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    binder, main = pins("binder/requirements.txt"), pins("requirements.txt")
    assert {"torch", "torchvision", "numpy", "matplotlib", "mlxtend", "scikit-image", "ipywidgets"} <= set(
        binder
    )
    assert all(main[name] == version for name, version in binder.items()), (binder, main)
    post_build = (REPO / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build and os.access(REPO / "binder" / "postBuild", os.X_OK)
