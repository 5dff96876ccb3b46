"""Published pretrained weights: which file a backbone needs, whether it is local, and fetching it fast.

`method.pretrained: true` means the backbone's published ImageNet weights: timm's hub weights for the
DeiT/ViT methods (SAT, TS-CAM, SCM), torchvision's IMAGENET1K_V1 weights for CAM. `fetch_pretrained`
returns a local file for them, downloading into the usual cache (the Hugging Face hub cache for timm,
`torch.hub.get_dir()/checkpoints` for torchvision) when needed. It fails in seconds, with a
`WeightsError` that names the weights and the `--set method.pretrained=/path/...` to use instead, when
the file is not cached and the host cannot be reached, or when `HF_HUB_OFFLINE=1` is set (then nothing
is downloaded, for timm or torchvision). A string `pretrained` is a local file and must exist.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from wsolbench.errors import WsolbenchError

CONNECT_TIMEOUT_S = 5.0


class WeightsError(WsolbenchError, FileNotFoundError):
    """Pretrained weights that are neither local nor downloadable; says what to pass instead."""


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file: where it comes from and where its cached copy lives."""

    hub: str  # "timm" or "torchvision"
    name: str  # timm: the hub repository (timm/deit_small_patch16_224.fb_in1k); torchvision: Weights enum
    filename: str
    url: str
    release_file: str = ""  # the authors' original file name, when it differs (DeiT's .pth)

    def describe(self) -> str:
        text = f"{self.hub} weights {self.name} (file {self.filename}, {self.url})"
        if self.release_file:
            text += f", also published as {self.release_file}"
        return text

    def cached(self) -> Path | None:
        """The local copy in the hub cache, or None."""
        if self.hub == "timm":
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(self.name, self.filename)
            return Path(found) if isinstance(found, str) and Path(found).is_file() else None
        path = torchvision_cache() / self.filename
        return path if path.is_file() else None

    def cache_location(self) -> str:
        if self.hub == "timm":
            from huggingface_hub import constants

            return constants.HF_HUB_CACHE
        return str(torchvision_cache())


def torchvision_cache() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def published_weights(hub: str, backbone: str) -> PublishedWeights:
    """The published ImageNet weights of `backbone` on `hub` ("timm" or "torchvision")."""
    if hub == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(backbone)
        if cfg is None or not cfg.hf_hub_id:
            raise WeightsError(f"method.backbone: timm publishes no hub weights for {backbone!r}; "
                               "pass a local file with --set method.pretrained=/path/to/weights.pth")
        filename = cfg.hf_hub_filename or "model.safetensors"
        release = Path(urlparse(cfg.url).path).name if cfg.url else ""
        return PublishedWeights("timm", cfg.hf_hub_id, filename, f"https://huggingface.co/{cfg.hf_hub_id}", release)
    if hub == "torchvision":
        import torchvision

        try:
            weights = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1
        except (ValueError, AttributeError):
            raise WeightsError(f"method.backbone: torchvision publishes no ImageNet weights for {backbone!r}; "
                               "pass a local file with --set method.pretrained=/path/to/weights.pth") from None
        return PublishedWeights("torchvision", f"{type(weights).__name__}.IMAGENET1K_V1",
                                Path(urlparse(weights.url).path).name, weights.url)
    raise ValueError(f"unknown weights hub {hub!r}")  # pragma: no cover - programming error


def method_weights(method: str, backbone: str | None) -> PublishedWeights | None:
    """The published weights `pretrained: true` means for this method and backbone (None: it has none)."""
    from wsolbench.registry import METHODS

    cls = METHODS.get(method)
    hub = getattr(cls, "weights_hub", None)
    backbone = backbone or cls.default_backbone
    if hub is None or backbone is None:
        return None
    return published_weights(hub, backbone)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _unreachable(url: str) -> str | None:
    """Why the host of `url` cannot be reached within CONNECT_TIMEOUT_S, or None when it can."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as error:
        return f"{host} cannot be reached ({error})"


def _not_available(user: str, weights: PublishedWeights, reason: str) -> WeightsError:
    suggested = weights.release_file or weights.filename
    return WeightsError(
        f"{user}: pretrained weights not available: {weights.describe()} is not in the local "
        f"cache ({weights.cache_location()}) and {reason}. Download the file elsewhere and pass it with "
        f"--set method.pretrained=/path/to/{suggested}"
        + (f" (or /path/to/{weights.filename})" if suggested != weights.filename else "")
    )


def _download(weights: PublishedWeights) -> Path:
    if weights.hub == "timm":
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(weights.name, weights.filename))
    import torch

    destination = torchvision_cache() / weights.filename
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(weights.url, str(destination), progress=True)
    return destination


def check_pretrained(method: str, backbone: str | None, pretrained: bool | str) -> str:
    """Validate `pretrained` without downloading; returns a one-line status (for --dry-run).

    A local file must exist (WeightsError otherwise); published weights are 'cached' or 'to download',
    and fail here when they are not cached and HF_HUB_OFFLINE is set.
    """
    if pretrained is False:
        return "from scratch"
    if isinstance(pretrained, str):
        if not Path(pretrained).is_file():
            raise WeightsError(f"method.pretrained: weight file {pretrained} does not exist")
        return f"local file {pretrained}"
    weights = method_weights(method, backbone)
    if weights is None:
        raise WeightsError(f"method.pretrained: {method} has no published pretrained weights; set it to false")
    if weights.cached() is not None:
        return f"{weights.describe()}: cached"
    if offline():
        raise _not_available(method, weights, "HF_HUB_OFFLINE is set")
    return f"{weights.describe()}: to download"


def fetch_pretrained(method: str, backbone: str | None, pretrained: bool | str) -> bool | str:
    """What to hand to `create_method(pretrained=...)`: False, or a local file (downloaded if need be).

    Raises WeightsError within seconds when published weights are neither cached nor downloadable.
    """
    check_pretrained(method, backbone, pretrained)
    if pretrained is False or isinstance(pretrained, str):
        return pretrained
    weights = method_weights(method, backbone)
    assert weights is not None  # check_pretrained raised otherwise
    return published_file(weights, method)


def published_file(weights: PublishedWeights, user: str) -> str:
    """The local file of `weights`, downloaded into the hub cache when not there yet.

    Raises WeightsError within seconds (its message starts with `user`, the method or backbone asking)
    when the file is not cached and HF_HUB_OFFLINE is set, the host cannot be reached or the download fails.
    """
    cached = weights.cached()
    if cached is not None:
        return str(cached)
    if offline():
        raise _not_available(user, weights, "HF_HUB_OFFLINE is set")
    reason = _unreachable(weights.url)
    if reason is not None:
        raise _not_available(user, weights, reason)
    try:
        return str(_download(weights))
    except Exception as error:  # noqa: BLE001 - any download failure becomes the same actionable message
        raise _not_available(user, weights, f"the download failed ({error})") from error
