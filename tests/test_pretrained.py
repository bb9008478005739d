import json

import pytest
import torch

from gan_utils import models, pretrained
from gan_utils.runtime import sample


def tiny_generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.DCGANGenerator(latent_dim=8, width=4).apply(models.init_weights)


@pytest.fixture
def weights_dir(tmp_path):
    G = tiny_generator()
    pretrained.export_generator(G, "tiny-dcgan", {"command": "python -m gan_utils train ...", "steps": 1},
                                weights_dir=tmp_path)  # fmt: skip
    return tmp_path


def test_export_then_load_round_trips_and_follows_the_contract(weights_dir):
    G = pretrained.load_pretrained("tiny-dcgan", weights_dir=weights_dir)
    assert not G.training and G.latent_dim == 8
    z = torch.randn(2, 8)
    with torch.no_grad():
        images, exported = G(z), tiny_generator().eval()(z)
    assert images.shape == (2, 1, 28, 28) and images.abs().max() <= 1
    torch.testing.assert_close(images, exported, atol=2e-2, rtol=0)  # the weights are stored in float16
    entry = pretrained.read_manifest(weights_dir)["tiny-dcgan"]
    assert entry["sha256"] == pretrained.sha256_of(weights_dir / "tiny-dcgan.pt")
    assert entry["architecture"]["kwargs"] == {"latent_dim": 8, "channels": 1, "width": 4, "image_size": 28}
    assert entry["command"].startswith("python -m gan_utils train")


def test_a_tampered_file_is_refused(weights_dir):
    path = weights_dir / "tiny-dcgan.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="does not match the sha256"):
        pretrained.load_pretrained("tiny-dcgan", weights_dir=weights_dir)


def test_an_unknown_name_lists_the_available_ones(weights_dir):
    with pytest.raises(
        pretrained.PretrainedError, match="no pretrained model called 'stylegan'.*'tiny-dcgan'"
    ):
        pretrained.load_pretrained("stylegan", weights_dir=weights_dir)


def test_a_file_with_pickled_code_is_refused_even_with_a_matching_hash(weights_dir):
    import os

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = weights_dir / "tiny-dcgan.pt"
    torch.save({"net.0.weight": Exploit()}, path)
    manifest = json.loads((weights_dir / pretrained.MANIFEST_NAME).read_text())
    manifest["tiny-dcgan"]["sha256"] = pretrained.sha256_of(path)
    (weights_dir / pretrained.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(pretrained.PretrainedError, match="could not be read safely"):
        pretrained.load_pretrained("tiny-dcgan", weights_dir=weights_dir)


@pytest.mark.parametrize("name", ["mlp-mnist", "dcgan-mnist", "dcgan-mnist-wide", "cdcgan-mnist"])
def test_shipped_generators_load_and_follow_the_contract(name):
    assert name in pretrained.available(), f"{name} should ship in gan_utils/weights"
    entry = pretrained.read_manifest()[name]
    assert (pretrained.WEIGHTS_DIR / entry["file"]).stat().st_size <= 5 * 1024 * 1024
    assert entry["command"] and entry["steps"] > 0 and entry["device"] and entry["data_source"]
    G = pretrained.load_pretrained(name)
    images = sample(G, torch.randn(16, G.latent_dim, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (16, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    # a trained generator draws dark backgrounds with bright strokes, and different digits
    assert images.mean() < -0.4 and images.std(dim=0).mean() > 0.1


def test_all_shipped_weights_together_stay_under_20_mb():
    total = sum(p.stat().st_size for p in pretrained.WEIGHTS_DIR.glob("*.pt"))
    assert total <= 20 * 1024 * 1024
