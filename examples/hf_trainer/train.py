"""A short `transformers.Trainer` script as the train stage (`train.logs: {from: hf-trainer}`): a tiny GPT-2 on the
bytes of the King James Bible (the builtin data). The Trainer logs into trainer_state.json (output_dir and every
checkpoint-<step>/), which labnote's hf-trainer importer reads while it runs and at its end.

    python -m examples.hf_trainer.train --steps 40 --lr 1e-3 --out runs/byo_hf_trainer/external

A rerun resumes from the newest checkpoint-<step>/ in --out (saved every --save-every steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipeline.data.sources import kjv_chapters

SEQ = 32


class Windows(torch.utils.data.Dataset):
    """Fixed windows of the text's bytes: input_ids = labels (the model shifts them)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return len(self.data) // SEQ - 1

    def __getitem__(self, i: int) -> dict:
        ids = self.data[i * SEQ : (i + 1) * SEQ]
        return {"input_ids": ids, "labels": ids}


def main() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save-every", type=int, default=20)
    args = parser.parse_args()

    text = "\n\n".join(kjv_chapters()[:40]).encode("utf-8")
    data = torch.tensor(list(text), dtype=torch.long)
    split = int(len(data) * 0.95)
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=SEQ, n_embd=32, n_layer=1, n_head=2))
    training = TrainingArguments(
        output_dir=str(args.out),
        max_steps=args.steps,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=args.lr,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="steps",
        save_steps=args.save_every,
        report_to="none",
        use_cpu=True,
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    val = torch.utils.data.Subset(Windows(data[split:]), range(16))
    trainer = Trainer(model=model, args=training, train_dataset=Windows(data[:split]), eval_dataset=val)
    last = get_last_checkpoint(str(args.out)) if args.out.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.save_state()  # output_dir/trainer_state.json: the whole log history and the Trainer's own counters


if __name__ == "__main__":
    main()
