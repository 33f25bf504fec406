"""Train the keyed de-identification generator (E_attr + AAD generator + PatchGAN).

    python tools/train/train_deid.py --config configs/train_deid.yaml [--set key=value ...]

Needs the cache from tools/train/prepare_faces.py. E_id (dlib's ResNet port) is frozen;
per sample, the identity input is the face's own descriptor (reconstruction, L_rec), another
face's, or the face's own rotated by the keyed transform M(z, f(p), d) towards a random
password's reference identity, so G learns to obey the identity input and to reach the
rotated identities the anonymizer will ask for. Losses (FaceShifter): hinge adversarial,
L_attr, L_id = 1 - cos(E_id(out), target), L_rec on own-identity samples.

Resumes from `<out>/last.pt` (model, optimisers, step, RNG states, loss history) unless
--fresh; `<out>/best.pt` is the checkpoint with the lowest validation score on a fixed
held-out batch. Runs on CUDA when available.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from masquerade.anonymizers import identity_key
from masquerade.config import AnonymizerConfig
from masquerade.datasets import REPO_ROOT
from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import PrivacyCurve, rotate
from masquerade.models.deid import (
    DeidConfig,
    DeidNet,
    MultiScaleDiscriminator,
    attribute_loss,
    crop_to_chip,
    hinge_d_loss,
    hinge_g_loss,
    identity_loss,
    parameter_count,
    to_pixels,
    to_unit,
)
from masquerade.models.dlib_resnet import DlibFaceResNet

log = logging.getLogger("train_deid")


@dataclass
class TrainConfig:
    cache: str = "cache/deid"
    out: str = "cache/deid/run"
    size: int = 96
    padding: float = 0.25
    model: dict[str, Any] = field(default_factory=dict)  # DeidConfig overrides
    batch_size: int = 8
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    w_adv: float = 1.0
    w_attr: float = 10.0
    w_id: float = 5.0
    w_rec: float = 10.0
    same_prob: float = 0.5  # own identity (reconstruction)
    rotate_prob: float = 0.5  # of the cross-identity samples: rotated own vs another face
    d_range: tuple[float, float] = (0.25, 1.0)
    # keyed targets as the pipeline makes them: "orthogonal" (keys.orthogonal, the default
    # transform) or "rotation" (Cao et al.'s, rotation.IdentityKey)
    identity_transform: str = "rotation"
    # rotation only: about the shipped library's centre (false: the first run's rotation
    # about the origin, with the cache's library)
    centred_rotation: bool = True
    max_identity_angle: float = 90.0
    init_weights: str = ""  # start G and E_attr from a weights file (no checkpoint yet)
    # E_id from a PyTorch state dict (tools/train/pack_faces.py) instead of dlib's model
    # file from face-recognition-models, which a GPU machine does not have
    e_id_weights: str = ""
    max_steps: int = 100_000
    max_minutes: float = 75.0
    log_every: int = 25
    ckpt_every: int = 250
    val_size: int = 32
    seed: int = 0
    threads: int = 2
    device: str = "auto"


def load_config(path: Path | None, overrides: list[str]) -> TrainConfig:
    data: dict[str, Any] = yaml.safe_load(path.read_text()) if path else {}
    for item in overrides:
        key, _, value = item.partition("=")
        data[key] = yaml.safe_load(value)
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(data) - names
    if unknown:
        raise SystemExit(f"unknown config keys: {sorted(unknown)}")
    cfg = TrainConfig(**data)
    cfg.betas = tuple(cfg.betas)  # type: ignore[assignment]
    cfg.d_range = tuple(cfg.d_range)  # type: ignore[assignment]
    if cfg.identity_transform not in ("orthogonal", "rotation"):
        raise SystemExit("identity_transform: must be orthogonal or rotation")
    return cfg


class FaceData:
    """Cached crops and descriptors in memory; a reference library from LFW train people."""

    def __init__(self, cache: Path, size: int, val_size: int, seed: int) -> None:
        self.faces = torch.from_numpy(np.load(cache / f"faces_{size}.npy"))
        self.z = torch.from_numpy(np.load(cache / f"embeddings_{size}.npy"))
        meta = np.load(cache / f"meta_{size}.npz")
        person = meta["person"]
        rng = np.random.default_rng(seed)
        utk = np.flatnonzero(person == "")
        self.val = np.sort(rng.choice(utk, val_size, replace=False))
        self.train = np.setdiff1d(np.arange(len(person)), self.val)
        # reference identities: mean descriptor per LFW train person with >= 2 images
        names, inverse, counts = np.unique(person, return_inverse=True, return_counts=True)
        z = self.z.numpy().astype(np.float64)
        keep = [i for i, n in enumerate(names) if n and counts[i] >= 2]
        means = np.stack([z[inverse == i].mean(0) for i in keep])
        self.library = ReferenceLibrary(means)
        log.info("data: %d train, %d val faces; reference library of %d people",
                 len(self.train), len(self.val), len(means))

    def images(self, idx: np.ndarray, device: torch.device) -> torch.Tensor:
        x = self.faces[torch.from_numpy(idx)].permute(0, 3, 1, 2).float()
        return to_unit(x).to(device)


def identity_targets(
    data: FaceData, idx: np.ndarray, cfg: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample identity inputs and a mask of own-identity (reconstruction) samples."""
    n = len(idx)
    z_own = data.z[torch.from_numpy(idx)].numpy().astype(np.float64)
    kind = rng.random(n)
    same = kind < cfg.same_prob
    rotated = ~same & (rng.random(n) < cfg.rotate_prob)
    other = ~same & ~rotated
    z = z_own.copy()
    if other.any():
        z[other] = data.z[torch.from_numpy(rng.choice(data.train, other.sum()))].numpy()
    if rotated.any():
        d = rng.uniform(*cfg.d_range, rotated.sum())
        if cfg.identity_transform == "orthogonal" or cfg.centred_rotation:
            key = identity_key(AnonymizerConfig(  # what run time uses, shipped library
                identity_transform=cfg.identity_transform,
                max_identity_angle=cfg.max_identity_angle))
            passwords = [rng.bytes(16) for _ in range(rotated.sum())]
            z[rotated] = np.stack([key.apply(zi, p, di) for zi, p, di
                                   in zip(z_own[rotated], passwords, d, strict=True)])
        else:
            targets = np.stack([data.library.target(rng.bytes(16))
                                for _ in range(rotated.sum())])
            curve = PrivacyCurve(max_angle_deg=cfg.max_identity_angle)
            z[rotated] = rotate(z_own[rotated], targets, curve.angle(d))
    return torch.from_numpy(z).float(), torch.from_numpy(same)


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.out = REPO_ROOT / cfg.out if not Path(cfg.out).is_absolute() else Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        cache = Path(cfg.cache)
        self.data = FaceData(cache if cache.is_absolute() else REPO_ROOT / cache,
                             cfg.size, cfg.val_size, cfg.seed)
        self.model_cfg = DeidConfig.from_dict(
            {**cfg.model, "size": cfg.size, "padding": cfg.padding})
        self.net = DeidNet(self.model_cfg).to(self.device)
        self.disc = MultiScaleDiscriminator(self.model_cfg).to(self.device)
        if cfg.e_id_weights:
            self.e_id = DlibFaceResNet()
            state = torch.load(cfg.e_id_weights, map_location="cpu", weights_only=True)
            self.e_id.load_state_dict({k: v.float() for k, v in state.items()})
        else:
            self.e_id = DlibFaceResNet.from_dlib()
        self.e_id = self.e_id.to(self.device).eval()
        for p in self.e_id.parameters():
            p.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.net.parameters(), cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), cfg.lr_d, betas=cfg.betas)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.best = math.inf
        val_rng = np.random.default_rng(cfg.seed + 1)
        self.val_z, self.val_same = identity_targets(self.data, self.data.val, cfg, val_rng)
        log.info("E_attr %d, G %d, D %d parameters on %s",
                 parameter_count(self.net.encoder), parameter_count(self.net.generator),
                 parameter_count(self.disc), self.device)

    def identity(self, faces: torch.Tensor) -> torch.Tensor:
        return self.e_id(to_pixels(crop_to_chip(faces, self.model_cfg.crop)))

    def train_step(self, x: torch.Tensor, z: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
        """One generator and one discriminator update; returns the loss terms."""
        cfg = self.cfg
        attrs = self.net.encoder(x)
        y = self.net.generator(z, attrs)
        l_adv = hinge_g_loss(self.disc(y))
        l_attr = attribute_loss(self.net.encoder(y), [a.detach() for a in attrs])
        l_id = identity_loss(self.identity(y), z)
        w = same.float().to(y.device)[:, None, None, None]
        l_rec = ((y - x).abs() * w).sum() / (w.sum() * y[0].numel()).clamp_min(1.0)
        loss = cfg.w_adv * l_adv + cfg.w_attr * l_attr + cfg.w_id * l_id + cfg.w_rec * l_rec
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        l_d = hinge_d_loss(self.disc(x), self.disc(y.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        l_d.backward()
        self.opt_d.step()
        return {"g": loss.item(), "adv": l_adv.item(), "attr": l_attr.item(),
                "id": l_id.item(), "rec": l_rec.item(), "d": l_d.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out UTKFace batch, fixed identity inputs: rec L1 on own, L_id on all."""
        self.net.eval()
        x = self.data.images(self.data.val, self.device)
        z, same = self.val_z.to(self.device), self.val_same
        y = self.net(x, z)
        cos = F.cosine_similarity(self.identity(y), z, dim=1).cpu()
        rec = (y - x).abs().mean(dim=(1, 2, 3)).cpu()
        self.net.train()
        out = {"val_rec": rec[same].mean().item(), "val_id": (1 - cos).mean().item(),
               "val_id_cross": (1 - cos[~same]).mean().item()}
        # following the identity input is the harder half: weight it over reconstruction
        out["val_score"] = out["val_rec"] + 3 * out["val_id_cross"]
        return out

    def state(self) -> dict[str, Any]:
        return {
            "config": self.model_cfg.to_dict(), "train_config": asdict(self.cfg),
            "model": self.net.state_dict(), "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "history": self.history, "best": self.best,
            "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                    "python": random.getstate()},
        }

    def save(self, name: str) -> None:
        tmp = self.out / (name + ".partial")
        torch.save(self.state(), tmp)
        tmp.replace(self.out / name)

    def resume(self) -> bool:
        path = self.out / "last.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["model"])
        self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.history = state["step"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        random.setstate(state["rng"]["python"])
        self.best = self.validate()["val_score"]  # the score may have changed with the config
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.history:
            return
        keys = ["adv", "attr", "id", "rec", "d", "val_rec", "val_id"]
        fig, axes = plt.subplots(2, 4, figsize=(14, 6))
        for ax, key in zip(axes.flat, keys, strict=False):
            pts = [(h["step"], h[key]) for h in self.history if key in h]
            if pts:
                s, v = zip(*pts, strict=True)
                ax.plot(s, v)
            ax.set_title(key)
            ax.set_xlabel("step")
        axes.flat[-1].axis("off")
        fig.tight_layout()
        fig.savefig(self.out / "loss_curves.png", dpi=80)
        plt.close(fig)

    def run(self) -> None:
        cfg = self.cfg
        self.net.train()
        self.disc.train()
        start = time.monotonic()
        window: list[dict[str, float]] = []
        t_window = time.monotonic()
        stop = {"flag": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
        while self.step < cfg.max_steps and not stop["flag"]:
            if (time.monotonic() - start) / 60 > cfg.max_minutes:
                log.info("time budget of %.0f min reached", cfg.max_minutes)
                break
            idx = self.rng.choice(self.data.train, cfg.batch_size, replace=False)
            z, same = identity_targets(self.data, idx, cfg, self.rng)
            losses = self.train_step(self.data.images(idx, self.device), z.to(self.device), same)
            self.step += 1
            window.append(losses)
            if self.step % cfg.log_every == 0:
                mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                rate = len(window) / (time.monotonic() - t_window)
                self.history.append({"step": self.step, **mean})
                log.info("step %d  %.2f steps/s  %s", self.step, rate,
                         "  ".join(f"{k} {v:.4f}" for k, v in mean.items()))
                window, t_window = [], time.monotonic()
            if self.step % cfg.ckpt_every == 0:
                self.checkpoint()
        if self.step % cfg.ckpt_every:
            self.checkpoint()
        log.info("stopped at step %d after %.1f min", self.step, (time.monotonic() - start) / 60)

    def checkpoint(self) -> None:
        val = self.validate()
        self.history.append({"step": self.step, **val})
        log.info("step %d  validation %s", self.step, json.dumps(val))
        if val["val_score"] < self.best:
            self.best = val["val_score"]
            self.save("best.pt")
        self.save("last.pt")
        self.plot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "train_deid.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing last.pt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(cfg.threads)
    trainer = Trainer(cfg)
    resumed = not args.fresh and trainer.resume()
    if not resumed and cfg.init_weights:
        init = DeidNet.load(REPO_ROOT / cfg.init_weights)
        if init.cfg.to_dict() != trainer.net.cfg.to_dict():
            raise SystemExit(f"init_weights {cfg.init_weights}: its model config differs")
        trainer.net.load_state_dict(init.state_dict())
        trainer.best = trainer.validate()["val_score"]
        log.info("initialised G and E_attr from %s", cfg.init_weights)
    trainer.run()


if __name__ == "__main__":
    main()
