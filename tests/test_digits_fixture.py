"""The digits fixture is a real, confident classifier, and `zoo convert` builds it as users would."""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import manifest_of, run_zoo
from digits_model import Digits, image_folder, load_split
from zoo.registry.loader import load_registry
from zoo.registry.query import effective_input, resolve_variant, select_weights


@pytest.fixture(scope="module")
def scored(digits: Digits) -> Dict[str, np.ndarray]:
    """The held-out images through the registry's preprocessing, scored by torchvision's ResNet class
    loaded from the checkpoint (not the fixture's own model object)."""
    from torchvision.models.resnet import Bottleneck, ResNet

    reg = load_registry(digits.conf)
    v = resolve_variant(reg, digits.variant)
    arch = v.arch
    model = ResNet(Bottleneck, list(arch.layers), num_classes=arch.num_classes, groups=arch.cardinality,
                   width_per_group=arch.base_width)
    model.load_state_dict(torch.load(digits.checkpoint, weights_only=True))
    model.eval()
    x, y = load_split(image_folder(digits.val), effective_input(v, select_weights(reg, v, digits.source, digits.tag)))
    with torch.no_grad():
        probs = model(torch.from_numpy(x)).softmax(1).numpy()
    return {"x": x, "y": y, "probs": probs}


def test_the_model_is_a_confident_classifier_of_held_out_digits(digits: Digits, scored: Dict[str, np.ndarray]) -> None:
    y, probs = scored["y"], scored["probs"]
    top1 = 100.0 * (probs.argmax(1) == y).mean()
    assert top1 >= 90.0
    assert probs.max(1).mean() >= 0.8  # confident: int8 rounding cannot flip near-tied logits by chance
    assert top1 == pytest.approx(digits.fp32_top1, abs=0.5)
    # grouped 3x3 convs: 32 channels in 8 groups of 4, a ResNeXt, not a ResNet
    assert torch.load(digits.checkpoint, weights_only=True)["layer1.0.conv2.weight"].shape == (32, 4, 3, 3)
    assert set(y) == set(range(10)) and len(y) >= 300
    calib = image_folder(digits.calib)
    assert {c for _, c in calib} == set(range(10)) and 80 <= len(calib) <= 120
    assert Image.open(calib[0][0]).mode == Image.open(image_folder(digits.val)[0][0]).mode == "RGB"


def test_zoo_convert_builds_it_and_onnx_runtime_agrees(digits: Digits, scored: Dict[str, np.ndarray], tmp_path) -> None:
    import onnxruntime as ort

    proc = run_zoo("convert", f"model={digits.variant}", f"source={digits.source}", f"weights={digits.checkpoint}",
                   "target=onnx", "out_dir=out", "progress=false", cwd=tmp_path, env={"ZOO_CONF": str(digits.conf)})
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    folder = tmp_path / "out" / digits.variant / digits.source / digits.tag / "onnx"
    m = manifest_of(tmp_path / "out", digits.variant, digits.source, digits.tag)
    assert m["status"] == "passed" and m["weights"]["mode"] == "file"

    sess = ort.InferenceSession(str(folder / m["artifact"]["files"][0]["name"]), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: scored["x"]})[0]
    onnx_top1 = 100.0 * (logits.argmax(1) == scored["y"]).mean()
    torch_top1 = 100.0 * (scored["probs"].argmax(1) == scored["y"]).mean()
    assert abs(onnx_top1 - torch_top1) <= 0.5
