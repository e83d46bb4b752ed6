"""The training settings form (one widget per ``TrainingConfig`` field) and launching a run."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages import access
from app_pages.adapt import adapted_choice
from app_pages.words import setting_help
from app_pages.workspace import WS_KEY
from data.store import Workspace

# What each technique means, in the words the Train page uses.
TECHNIQUE_LABELS = {
    "head": "Feature extraction (frozen backbone + head)",
    "full": "Full fine-tuning",
    "lora": "LoRA adapters",
}
# The Train page keeps its last valid config here so the Charts page can re-run an experiment
# with the same settings.
TRAIN_CONFIG_KEY = "train_config"
TRACKER_LABELS = {"mlflow": "MLflow", "wandb": "Weights & Biases"}
# What each setting is called on the page; the config's own name (what the CLI flags, the run
# records and the exports use) is given in its help text.
FIELD_LABELS = {
    "technique": "Technique",
    "model": "Model",
    "learning_rate": "Learning rate",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "gradient_accumulation_steps": "Accumulate gradients over (batches)",
    "max_length": "Max tokens per text",
    "seed": "Random seed",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha (scale)",
    "lora_dropout": "LoRA dropout",
    "weight_decay": "Weight decay",
    "warmup_ratio": "Warm-up share of steps",
    "dropout": "Dropout",
    "validation_fraction": "Validation share of train",
    "early_stopping_patience": "Early stopping: evaluations without improvement",
    "eval_steps": "Evaluate every (steps)",
    "max_train_samples": "Training rows at most",
    "max_eval_samples": "Test rows scored at most",
    "device": "Device",
    "precision": "Precision",
    "report_to": "Experiment tracker",
}


def field_label(name: str) -> str:
    """The page's words for a config field (its own name when it has none)."""
    return FIELD_LABELS.get(name, name)


# Widget layout: (section title or None for always visible, fields). LoRA fields only show
# for technique "lora"; report_to is a toggle of its own.
_MAIN_FIELDS = (
    ("technique", "model", "learning_rate", "epochs"),
    ("batch_size", "gradient_accumulation_steps", "max_length", "seed"),
)
_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout")
_MORE_FIELDS = (
    ("weight_decay", "warmup_ratio", "dropout", "validation_fraction"),
    ("early_stopping_patience", "eval_steps", "max_train_samples", "max_eval_samples"),
    ("device", "precision"),
)


def config_form(prefix: str, **overrides: Any):
    """Widgets for a TrainingConfig (defaults from the dataclass); returns (config, error).

    ``error`` is TrainingConfig's own message (it starts with the field's name), or the
    tracker's when logging is on and its package is missing; ``config`` is None then.
    """
    from training.config import CHOICES, TrainingConfig

    defaults = {**TrainingConfig().to_dict(), **overrides}
    values: dict[str, Any] = {}

    def widget(col, name: str) -> None:
        values[name] = _field_widget(col, prefix, name, defaults[name], values, CHOICES)

    for row in _MAIN_FIELDS:
        for col, name in zip(st.columns(4), row, strict=False):
            widget(col, name)
    technique = values.get("technique", defaults["technique"])
    if technique == "lora":
        st.caption("LoRA: low-rank adapters on the attention query/value projections.")
        for col, name in zip(st.columns(4), _LORA_FIELDS, strict=False):
            widget(col, name)
    with st.expander("Regularisation, validation, data caps and hardware"):
        for row in _MORE_FIELDS:
            for col, name in zip(st.columns(4), row, strict=False):
                widget(col, name)
    track = st.toggle(
        "Log to an experiment tracker",
        value=defaults["report_to"] != "none",
        key=f"{prefix}_track",
        help=setting_help("report_to", TrainingConfig.FIELD_HELP["report_to"]),
    )
    values["report_to"] = "none"
    if track:
        current = defaults["report_to"] if defaults["report_to"] != "none" else "mlflow"
        values["report_to"] = st.radio(
            "Tracker",
            list(TRACKER_LABELS),
            index=list(TRACKER_LABELS).index(current),
            format_func=TRACKER_LABELS.get,
            horizontal=True,
            key=f"{prefix}_report_to",
        )
    for name, default in defaults.items():
        values.setdefault(name, default)  # LoRA fields while another technique is chosen
    return _validated(values)


def _field_widget(col, prefix: str, name: str, default: Any, values: dict, choices: dict) -> Any:
    """One config field's widget; optional numbers start empty (None) when their default is."""
    from training.config import DEFAULT_LEARNING_RATES, OPTIONAL_FIELDS, TrainingConfig

    key, help_ = f"{prefix}_{name}", setting_help(name, TrainingConfig.FIELD_HELP[name])
    label = field_label(name)
    if name == "technique":
        options = ["head", "full", "lora"]
        return col.selectbox(
            label,
            options,
            index=options.index(default),
            format_func=TECHNIQUE_LABELS.get,
            key=key,
            help=help_,
        )
    if name == "model":
        typed = col.text_input(
            label, value=default, key=key, help=help_, placeholder="packaged all-MiniLM-L6-v2"
        )
        # An encoder adapted to this workspace's texts, when it has some (app_pages.adapt).
        return adapted_choice(col, st.session_state.get(WS_KEY), key=f"{key}_adapted") or typed
    if name in choices:
        options = list(choices[name])
        return col.selectbox(label, options, index=options.index(default), key=key, help=help_)
    integer = name in _INTEGER_FIELDS
    placeholder = None
    if name == "learning_rate":
        placeholder = f"{DEFAULT_LEARNING_RATES[values.get('technique', 'full')]:g} (default)"
    elif name in OPTIONAL_FIELDS:
        placeholder = "all rows" if name.startswith("max_") else "default"
    if default is None and name not in OPTIONAL_FIELDS:
        default = 0
    return col.number_input(
        label,
        value=None if default is None else (int(default) if integer else float(default)),
        step=1 if integer else (1e-5 if name == "learning_rate" else 0.01),
        format=None if integer else "%g",
        key=key,
        help=help_,
        placeholder=placeholder,
    )


_INTEGER_FIELDS = {
    "batch_size",
    "max_length",
    "seed",
    "max_train_samples",
    "max_eval_samples",
    "gradient_accumulation_steps",
    "early_stopping_patience",
    "eval_steps",
    "lora_r",
    "lora_alpha",
}


def _validated(values: dict[str, Any]):
    from training.config import TrainingConfig
    from training.tracking import check_tracker

    try:
        config = TrainingConfig.from_dict(values)
        check_tracker(config.report_to)
    except ValueError as exc:
        return None, _in_page_words(str(exc))
    if config.early_stopping_patience and config.validation_fraction == 0:
        # fine_tune refuses this too, but only once the job has started.
        return None, (
            f"{field_label('early_stopping_patience')} (early_stopping_patience) needs "
            f"validation rows: set {field_label('validation_fraction')} (validation_fraction) "
            "above 0 (e.g. 0.15), or early stopping to 0."
        )
    return config, None


def launch_training(
    ws: Workspace,
    config: Any,
    experiment: str = "single",
    options: dict | None = None,
    *,
    estimate_seconds: float | None = None,
) -> int:
    """Start a single run (job kind ``train``) or an experiment as a background job.

    ``estimate_seconds`` (the estimate the page showed) is kept with the job, so its progress
    can say how long is left before the first step is measured.
    """
    timing = {} if estimate_seconds is None else {"estimate_seconds": round(estimate_seconds, 1)}
    if experiment == "single":
        return access.launch(ws, "train", {"config": config.to_dict(), **timing})
    params = {"config": config.to_dict(), "experiment": experiment, "options": options or {}}
    return access.launch(ws, "experiment", {**params, **timing})


def _in_page_words(message: str) -> str:
    """A config error that starts with a field's name starts with its label instead, the
    name kept in brackets ("Learning rate (learning_rate) must be ...")."""
    name = message.split(" ", 1)[0].rstrip(":,")
    if name in FIELD_LABELS:
        return f"{FIELD_LABELS[name]} ({name}){message[len(name) :]}"
    return message
