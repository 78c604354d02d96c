"""`make data EXP=…`: fill the Hugging Face cache (HF_HOME) on a machine with internet, for offline stages."""

from __future__ import annotations

import logging

from pipeline.config.schema import Experiment, HFSource, PretrainedTokenizer

log = logging.getLogger(__name__)


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:
        pass
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    return tuple(errors)


def fetch(cfg: Experiment) -> list[str]:
    """Download what the experiment reads from the hub; return what was fetched. A download that fails (no
    network, a wrong name) is one line naming what could not be fetched."""
    try:
        return _fetch(cfg)
    except _network_errors() as exc:
        from pipeline.errors import DataError

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"make data: cannot download ({type(exc).__name__}: {first}); check the network, HF_ENDPOINT and the names"
        ) from None


def _fetch(cfg: Experiment) -> list[str]:
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
