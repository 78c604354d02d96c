"""A small PyTorch Lightning module as the train stage (`train.logs: {from: lightning}`): a byte-level bigram model
on the King James Bible (the builtin data), logged with CSVLogger to <out>/lightning_logs/version_<n>/metrics.csv,
which labnote's lightning importer reads while it runs and at its end.

    python -m examples.lightning.train --steps 40 --lr 3e-3 --out runs/byo_lightning/external

A rerun resumes from <out>/checkpoints/last.ckpt (saved every --save-every steps) into a new logger version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch

from pipeline.data.sources import kjv_chapters

SEQ = 32


class Bigram(pl.LightningModule):
    def __init__(self, lr: float, max_steps: int):
        super().__init__()
        self.save_hyperparameters()  # hparams.yaml: max_steps is the planned length labnote reads
        self.net = torch.nn.Sequential(torch.nn.Embedding(256, 32), torch.nn.Linear(32, 256))

    def loss(self, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, _index):
        loss = self.loss(batch)
        self.log("train_loss", loss)
        self.log("tokens", float((self.global_step + 1) * batch[0].numel()))
        return loss

    def validation_step(self, batch, _index):
        self.log("val_loss", self.loss(batch))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def windows(data: torch.Tensor) -> torch.utils.data.TensorDataset:
    n = len(data) // (SEQ + 1)
    rows = data[: n * (SEQ + 1)].view(n, SEQ + 1)
    return torch.utils.data.TensorDataset(rows[:, :-1], rows[:, 1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save-every", type=int, default=10)
    args = parser.parse_args()

    pl.seed_everything(args.seed, verbose=False)
    text = "\n\n".join(kjv_chapters()[:40]).encode("utf-8")
    data = torch.tensor(list(text), dtype=torch.long)
    split = int(len(data) * 0.95)
    train = torch.utils.data.DataLoader(windows(data[:split]), batch_size=8, shuffle=True)
    val = torch.utils.data.DataLoader(windows(data[split:]), batch_size=16)
    checkpoints = args.out / "checkpoints"
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(str(args.out), name="lightning_logs", flush_logs_every_n_steps=5),
        log_every_n_steps=5,
        val_check_interval=20,
        limit_val_batches=2,
        check_val_every_n_epoch=None,
        callbacks=[
            pl.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=args.save_every, save_last=True)
        ],  # fmt: skip
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    last = checkpoints / "last.ckpt"
    trainer.fit(Bigram(args.lr, args.steps), train, val, ckpt_path=str(last) if last.is_file() else None)


if __name__ == "__main__":
    main()
