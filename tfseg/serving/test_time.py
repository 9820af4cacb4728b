"""Test-time augmentation: which passes of the network the inference path averages
(:func:`tfseg.serving.graph.make_inference_fn`). Pure Python, so that the command line
checks the setting before TensorFlow is imported."""

from __future__ import annotations

from dataclasses import dataclass

from tfseg.errors import UserError


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Passes of the network averaged at inference: each scale of the network input
    (1.0: as trained), each also mirrored left-right when ``flip``. The default is one
    pass, no augmentation."""

    __test__ = False  # a class named Test*, but not one of pytest's
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if not self.scales or any(not 0.25 <= scale <= 4.0 for scale in self.scales):
            raise UserError(f"test-time scales {list(self.scales)}: give one or more factors "
                            "between 0.25 and 4")

    @property
    def passes(self) -> list[tuple[float, bool]]:
        """``(scale, mirrored)`` of each network pass."""
        return [(scale, mirrored) for scale in self.scales for mirrored in ((False, True) if self.flip else (False,))]

    @property
    def enabled(self) -> bool:
        """Whether there is more than the one plain pass."""
        return len(self.passes) > 1

    def metadata(self) -> dict:
        """What ``tfseg.json`` records (``{"flip": false, "scales": [1.0]}``: off)."""
        return {"flip": self.flip, "scales": list(self.scales)}


NO_TEST_TIME_AUGMENTATION = TestTimeAugmentation()
