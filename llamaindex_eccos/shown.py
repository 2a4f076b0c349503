"""What an ``ECCOSLLM`` shows of itself (repr, ``to_dict``, ``to_json``): never a credential."""

from __future__ import annotations

from typing import Any

from eccos_core.redaction import redact_params


class Redacted:
    """Mixin: ``repr`` and ``to_dict`` (hence ``to_json``) with every credential replaced by ``***``.

    ``additional_kwargs`` may carry ``extra_headers={"Authorization": ...}``; the values the calls send are
    untouched, only what is shown or serialized is redacted.
    """

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():  # type: ignore[misc]
            yield name, redact_params(value)

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """LlamaIndex's serialized form, credentials redacted."""
        return redact_params(super().to_dict(**kwargs))  # type: ignore[misc]


__all__ = ["Redacted"]
