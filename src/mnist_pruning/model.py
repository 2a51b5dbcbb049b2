"""LeNet-5 (LeCun et al. 1998) for 28 x 28 digits."""

from __future__ import annotations

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
