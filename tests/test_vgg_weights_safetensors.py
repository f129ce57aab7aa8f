"""VGG weights as safetensors read like the .pth (no unpickling), and a broken file is named."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from models.vgg import VGGFeatures, VGGWeightsUnavailable, load_vgg19


def test_a_safetensors_vgg19_loads_like_its_pth(tmp_path) -> None:
    torch.manual_seed(0)
    ref = VGGFeatures(["relu2_1"])
    sd = {k.replace("body.", ""): v.contiguous() for k, v in ref.state_dict().items()}  # conv1_1.weight ...
    torch.save(sd, tmp_path / "vgg.pth")
    save_file(sd, str(tmp_path / "vgg.safetensors"))
    x = torch.rand(1, 3, 16, 16)
    a, _ = load_vgg19(["relu2_1"], "max", str(tmp_path / "vgg.pth"), "torchvision")
    b, info = load_vgg19(["relu2_1"], "max", str(tmp_path / "vgg.safetensors"), "torchvision")
    assert info.pretrained and torch.equal(a(x)["relu2_1"], b(x)["relu2_1"])
    assert torch.equal(b(x)["relu2_1"], ref(x)["relu2_1"])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(VGGWeightsUnavailable, match="bad.safetensors"):
        load_vgg19(["relu2_1"], "max", str(tmp_path / "bad.safetensors"), "torchvision")
