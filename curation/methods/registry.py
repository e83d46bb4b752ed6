"""The detection-method registry: each method's name, help, probabilities and time estimate.

In the spirit of cleanlab Datalab's issue-manager registry: :func:`curation.methods.method_probs`
and :func:`curation.methods.detection_seconds` look a method up here instead of branching on its
name, so adding one (say, a fine-tuned model with LoRA) is one :func:`register_method` call and
nothing else changes; the app and the CLI list it from :data:`METHODS` and :data:`METHOD_HELP`.

Two kinds of thing live here:

* a :class:`Component` is one model fitted over the fold split (:class:`FoldSplit`): its
  ``probs`` and its time ``estimate``. Its speed figures are attributes, so they can be
  replaced by measured ones without touching the fitting code.
* a :class:`DetectionMethod` is what a user picks: a name, a help line and one or more
  components. Several are pooled by :func:`curation.methods.pooling.combine`; composite
  methods (``ensemble``) share the component objects of the single ones (``embedding``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.methods.pooling import combine
from curation.probs import _check_oos_inputs, _fold_ids
from runtime.progress import Cancelled, Progress
from runtime.validation import check_texts

if TYPE_CHECKING:
    from training.config import TrainingConfig


@dataclass(frozen=True)
class FoldSplit:
    """What every component fits on, already checked: the rows, their labels and their folds.

    Attributes
    ----------
    texts, features, labels
        The ``n`` texts, their ``(n, d)`` embeddings and ``(n,)`` class ids ``0..K-1``.
    folds
        ``(n,)`` fold id per row, ``0..n_folds-1``: a seeded shuffle that never depends on
        the labels, shared by every component so that their pooling is out-of-sample too.
    n_classes, n_folds, seed
        K, the number of folds and the seed of the fold shuffle.
    text_matrix, neighbors
        Cached label-free inputs (:func:`curation.text_features.text_features`, the neighbour
        graph), or None to compute them.
    finetune_rows, training_config, label_names
        Options of the fine-tuned component (see :func:`curation.methods.method_probs`).
    progress, should_stop
        The caller's progress callback and stop poll; components use :meth:`report` and
        :meth:`check`.
    """

    texts: list[str]
    features: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    n_classes: int
    n_folds: int
    seed: int
    text_matrix: Any = None
    neighbors: np.ndarray | None = None
    finetune_rows: int | str | None = "auto"
    training_config: TrainingConfig | None = None
    label_names: Sequence[str] | None = None
    progress: Progress | None = None
    should_stop: Callable[[], bool] | None = None

    @classmethod
    def checked(
        cls,
        texts: Sequence[str],
        labels: np.ndarray,
        *,
        features: np.ndarray,
        n_classes: int | None,
        n_folds: int,
        seed: int,
        **options: Any,
    ) -> FoldSplit:
        """The split of these rows into ``n_folds`` folds, after checking the inputs agree
        (``options``: the optional attributes above)."""
        texts = check_texts(texts)
        x, y, k = _check_oos_inputs(features, labels, n_folds, n_classes)
        if len(texts) != len(y):
            raise ValueError(
                f"texts has {len(texts)} rows but labels has {len(y)}; pass one of each."
            )
        folds = _fold_ids(len(y), n_folds, seed)
        return cls(texts, x, y, folds, k, n_folds, seed, **options)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop (called between steps)."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()

    def report(self, event: dict[str, Any]) -> None:
        """Pass a progress event on, after a stop check: every report is a cancel point."""
        self.check()
        if self.progress is not None:
            self.progress(event)


class Component(ABC):
    """One source of out-of-sample probabilities, fitted over a :class:`FoldSplit`.

    Subclasses are frozen dataclasses that give ``name``, implement :meth:`probs` and either set
    ``fit_seconds_per_row`` (and :meth:`prepare_seconds` for label-free work a caller may cache)
    or override :meth:`estimate`.
    """

    name: str
    # Seconds per row of the fit over all folds, with the label-free inputs already computed.
    fit_seconds_per_row: float = 0.0

    @abstractmethod
    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        """``(n, K)`` probabilities, each row's from a model that never saw its label, and the
        settings used (JSON-friendly, stored with the analysis)."""

    def estimate(
        self,
        n_rows: int,
        *,
        device: str = "cpu",
        n_folds: int = 5,
        cached: bool = False,
        finetune_rows: int | str | None = "auto",
        epochs: float = 3.0,
    ) -> float:
        """Rough seconds of :meth:`probs` on ``n_rows`` rows (the options as in
        :func:`curation.methods.detection_seconds`; most components need only ``cached``)."""
        seconds = self.fit_seconds_per_row * n_rows
        return seconds if cached else seconds + self.prepare_seconds(n_rows)

    def prepare_seconds(self, n_rows: int) -> float:
        """Seconds of the label-free work that a caller may cache (none by default)."""
        return 0.0


@dataclass(frozen=True)
class DetectionMethod:
    """A detection method as users pick it: one component, or several pooled.

    Attributes
    ----------
    name
        What the app, the CLI and stored analyses call it.
    help
        One or two sentences for people choosing a method.
    components
        The components whose probabilities are pooled, in the order they run.
    pool_seconds_per_row
        Time of the pooling when there are several components (bench/detection.py: ~0.3 s
        at 100k rows, rounded up).
    """

    name: str
    help: str
    components: tuple[Component, ...]
    pool_seconds_per_row: float = 4e-6

    def __post_init__(self) -> None:
        names = [component.name for component in self.components]
        if not names or len(set(names)) != len(names):
            raise ValueError(
                f"Method {self.name!r} needs one or more components with distinct names, "
                f"got {names}."
            )

    @property
    def component_names(self) -> tuple[str, ...]:
        """The components' names, e.g. to ask whether a method needs the text features."""
        return tuple(component.name for component in self.components)

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        """Run each component (reporting ``{"stage", "done", "total"}`` before each) and pool.

        Returns the pooled ``(n, K)`` probabilities and ``{"components": name -> settings
        with "seconds", "weights": name -> pooling weight}``.
        """
        parts: dict[str, np.ndarray] = {}
        settings: dict[str, dict[str, Any]] = {}
        for i, component in enumerate(self.components):
            split.report({"stage": component.name, "done": i, "total": len(self.components)})
            start = time.perf_counter()
            parts[component.name], used = component.probs(split)
            settings[component.name] = {**used, "seconds": round(time.perf_counter() - start, 3)}
        probs, weights = combine(parts, split.labels, split.folds)
        return probs, {"components": settings, "weights": weights}

    def estimate(
        self,
        n_rows: int,
        *,
        device: str = "cpu",
        n_folds: int = 5,
        cached: bool = False,
        finetune_rows: int | str | None = "auto",
        epochs: float = 3.0,
    ) -> float:
        """Rough seconds of :meth:`probs`: the components' estimates plus the pooling."""
        options = {
            "device": device,
            "n_folds": n_folds,
            "cached": cached,
            "finetune_rows": finetune_rows,
            "epochs": epochs,
        }
        total = sum(component.estimate(n_rows, **options) for component in self.components)
        if len(self.components) > 1:
            total += self.pool_seconds_per_row * n_rows
        return total


# Name -> method, in the order the app offers them.
REGISTRY: dict[str, DetectionMethod] = {}


def register_method(method: DetectionMethod) -> DetectionMethod:
    """Add a detection method (a second method of the same name is an error).

    Examples
    --------
    >>> from curation.methods import EMBEDDING
    >>> _ = register_method(DetectionMethod("lda", "The embedding LDA again.", (EMBEDDING,)))
    >>> "lda" in METHODS
    True
    >>> _ = unregister_method("lda")
    """
    if not isinstance(method, DetectionMethod):
        raise TypeError(f"register_method takes a DetectionMethod, got {type(method).__name__}.")
    if method.name in REGISTRY:
        raise ValueError(f"A method named {method.name!r} is already registered.")
    REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> DetectionMethod:
    """Remove the method called ``name`` and return it (an unknown name is a ``ValueError``)."""
    return REGISTRY.pop(detection_method(name).name)


def detection_method(name: str) -> DetectionMethod:
    """The registered method called ``name``; a ``ValueError`` lists the valid names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name, e.g. a list
        raise ValueError(f"Unknown method {name!r}; valid: {', '.join(REGISTRY)}.") from None


class _MethodNames(KeysView):
    """The registered names in order, always current, with a tuple's ``[i]`` and ``index``.

    A live view rather than a tuple so that ``from curation.methods import METHODS`` sees
    methods registered later; a ``KeysView`` because Streamlit takes one as widget options.
    """

    def __init__(self) -> None:
        super().__init__(REGISTRY)

    def __getitem__(self, i: int) -> str:
        return tuple(REGISTRY)[i]

    def index(self, name: str) -> int:
        return tuple(REGISTRY).index(name)

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


class _MethodHelp(Mapping[str, str]):
    """Name -> help of every registered method: a live, read-only view."""

    def __getitem__(self, name: str) -> str:
        return REGISTRY[name].help

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


METHODS = _MethodNames()
METHOD_HELP = _MethodHelp()
