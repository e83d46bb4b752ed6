"""What a fine-tuning run trains: every weight, the head only, or LoRA adapters.

All three go through the same ``Trainer`` loop in :mod:`training.finetune`; this module loads
the classifier (with an optional dropout override), prepares it for the chosen technique and
turns it back into a plain ``save_pretrained`` model afterwards, so :func:`training.inference.predict_proba` and
the export read every run the same way.

- ``full``: every weight is trained.
- ``head``: the encoder (embeddings and transformer layers) is frozen; the pooler (where the
  architecture has one) and the classifier are trained. Backward passes stop at the head, so a
  step costs little more than a forward pass.
- ``lora``: low-rank adapters (peft ``LoraConfig``, ``TaskType.SEQ_CLS``) on the attention
  query/value projections, plus a trainable head (peft's ``modules_to_save``). After training
  the adapters are merged into the weights (``merge_and_unload``), so the saved folder is a
  plain model.

torch, transformers and peft are imported lazily.
"""

from __future__ import annotations

from typing import Any

from runtime.models import load_error_message, resolve_model
from training.config import TECHNIQUES, TrainingConfig

# Config attributes that hold dropout rates across common encoder families (BERT/RoBERTa/
# DeBERTa use *_prob, DistilBERT dropout/seq_classif_dropout, others hidden_dropout...).
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "hidden_dropout",
    "classifier_dropout_prob",
)
# Modules that belong to the classification head besides the classifier itself: BERT's pooler
# feeds the classifier and is trained with it under "head" and "lora".
HEAD_EXTRAS = ("pooler",)


def load_classifier(
    model_name: str, label_names: list[str], *, dropout: float | None = None
) -> tuple[Any, Any, bool]:
    """Load a sequence classifier and its tokenizer for ``label_names``.

    Parameters
    ----------
    model_name
        ``""`` for the packaged encoder, a folder, or a hub id.
    label_names
        Class names in id order (``id2label`` / ``label2id`` of the model).
    dropout
        ``None`` keeps the checkpoint's dropout; a number sets every dropout rate the model's
        config has (hidden, attention, classifier).

    Returns
    -------
    (model, tokenizer, new_head)
        ``new_head`` is True when the classification head was freshly initialised (a plain
        encoder such as the packaged MiniLM, or a different number of classes): its
        predictions before training are chance level.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from training.inference import quiet_transformers

    source = resolve_model(model_name)
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            config = AutoConfig.from_pretrained(
                source, num_labels=len(label_names), id2label=id2label, label2id=label2id
            )
    except (OSError, ValueError) as exc:
        raise OSError(load_error_message(source, exc)) from exc
    if dropout is not None:
        _set_dropout(config, dropout, source)
    try:
        # ignore_mismatched_sizes lets a model fine-tuned earlier on a different number of
        # classes be fine-tuned again (its head is then new).
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise OSError(load_error_message(source, exc)) from exc
    new_head = bool(info.get("missing_keys") or info.get("mismatched_keys"))
    return model, tokenizer, new_head


def _set_dropout(config: Any, dropout: float, source: str) -> None:
    found = [name for name in DROPOUT_ATTRIBUTES if hasattr(config, name)]
    if not found:
        raise ValueError(
            f"dropout={dropout} was asked for, but the config of {source} has none of the "
            f"dropout settings {list(DROPOUT_ATTRIBUTES)}; leave dropout empty (None) to keep "
            "the model's own."
        )
    for name in found:
        setattr(config, name, float(dropout))


def apply_technique(model: Any, config: TrainingConfig) -> Any:
    """Prepare a loaded classifier for ``config.technique``; returns the model to train."""
    if config.technique == "full":
        return model
    if config.technique == "head":
        return _freeze_encoder(model)
    if config.technique == "lora":
        return _wrap_lora(model, config)
    raise ValueError(f"Unknown technique {config.technique!r}; valid: {list(TECHNIQUES)}.")


def _freeze_encoder(model: Any) -> Any:
    backbone = getattr(model, model.base_model_prefix, None)
    if backbone is None:
        raise ValueError(
            f"technique='head' needs a model with a separate encoder ({type(model).__name__} "
            f"has no '{model.base_model_prefix}' module); use technique='full' or 'lora'."
        )
    for name, param in backbone.named_parameters():
        param.requires_grad = any(part in name.split(".") for part in HEAD_EXTRAS)
    return model


def _wrap_lora(model: Any, config: TrainingConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    backbone = getattr(model, model.base_model_prefix, model)
    extras = [m for m in HEAD_EXTRAS if getattr(backbone, m, None) is not None]
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        # None: peft's per-architecture default, the attention query/value projections
        # (query/value for BERT and RoBERTa, query_proj/value_proj for DeBERTa-v2, ...).
        target_modules=None,
        # SEQ_CLS already keeps the classifier trainable; the pooler feeds it, so it goes too.
        modules_to_save=extras or None,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise ValueError(
            f"technique='lora' could not find attention projections in "
            f"{type(model).__name__} ({exc}); use technique='full' or 'head' for this model."
        ) from exc


def finalize(model: Any) -> Any:
    """A plain transformers model to save: LoRA adapters merged in, peft wrappers removed."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    for param in model.parameters():
        param.requires_grad = True
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return int(trainable), int(total)
