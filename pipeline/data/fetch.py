"""`make data EXP=…`: fill the Hugging Face cache (HF_HOME) on a machine with internet, for offline stages."""

from __future__ import annotations

import logging

from pipeline.config.schema import Experiment, HFSource, PretrainedTokenizer

log = logging.getLogger(__name__)


def fetch(cfg: Experiment) -> list[str]:
    """Download what the experiment reads from the hub; return what was fetched."""
    fetched = []
    source, tok = cfg.data.source, cfg.data.tokenizer
    if isinstance(source, HFSource):
        import datasets

        datasets.load_dataset(source.name, source.config, revision=source.revision, data_files=source.data_files)
        fetched.append(f"dataset {source.name}/{source.config or ''}")
    if isinstance(tok, PretrainedTokenizer):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tok.path)
        fetched.append(f"tokenizer {tok.path}")
    from pipeline.evaluate.harness import is_local_task

    harness = cfg.eval.harness
    hub_tasks = [t.task for t in harness.specs() if not is_local_task(t.task, harness.include_path)]
    if hub_tasks:
        from lm_eval.tasks import TaskManager, get_task_dict

        get_task_dict(hub_tasks, TaskManager())  # builds each task, which downloads its dataset
        fetched.append(f"lm-eval task datasets {', '.join(hub_tasks)}")
    for item in fetched or ["nothing: this experiment reads only local or built-in data"]:
        log.info("fetched %s", item)
    return fetched
