"""The networks a subset is trained under, registered by name (`model=` in conf/model/):
LeNet-5, the study's network and the default; the dataset-condensation benchmark's ConvNet-3;
an MLP. A subset chosen under one can be trained under another (`selector=fixed`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn


class LeNet5(nn.Module):
    """Two 5x5 convolutions (6 and 16 maps) with 2x2 pooling, then 120-84-10 fully connected.

    The first convolution pads by 2 so that a 28 x 28 MNIST digit is seen as the 32 x 32 input
    of the original; ReLU and max-pooling replace the original's scaled tanh and subsampling,
    as in every modern re-implementation.
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class ConvNet(nn.Module):
    """The dataset-condensation benchmark's ConvNet (Zhao et al. 2021; `networks.py` ConvNet with
    `utils.py` get_default_convnet_setting: width 128, depth 3, instance norm, ReLU, average
    pooling): `depth` blocks of 3x3 convolution, instance norm (GroupNorm with one group per
    channel, affine), ReLU and 2x2 average pooling, then one linear layer. As there, a 28 x 28
    digit enters the first convolution padded by 3, so the network sees 32 x 32 (features 4 x 4
    after three blocks)."""

    def __init__(self, width: int = 128, depth: int = 3, n_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = 1, 32
        for d in range(depth):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=3 if d == 0 else 1),
                nn.GroupNorm(width, width, affine=True),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            channels, side = width, side // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * side * side, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """Fully connected layers on the 784 pixels, ReLU between them: no convolution, so what a
    subset teaches it owes nothing to a convolutional prior. `hidden=[128, 128]` is the
    condensation benchmark's MLP (`networks.py`)."""

    def __init__(self, hidden: Sequence[int] = (128,), n_classes: int = 10) -> None:
        super().__init__()
        sizes = [28 * 28, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


MODELS: dict[str, Callable[..., nn.Module]] = {"lenet5": LeNet5, "convnet3": ConvNet, "mlp": MLP}


def build_model(name: str = "lenet5", **options: object) -> nn.Module:
    """The network `name` with its options (conf/model/NAME.yaml, less `name`)."""
    if name not in MODELS:
        raise ValueError(f"model={name!r} is unknown: one of {', '.join(MODELS)}")
    return MODELS[name](**options)
