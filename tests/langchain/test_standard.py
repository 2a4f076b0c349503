"""LangChain's standard chat model suites, offline: unit tests and integration tests against the loopback server."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_eccos import ChatECCOS

OVERRIDE_MODEL = "gemma-2-9b-it"
"""A pool model a call can be pinned to with ``model=``."""


class TestChatECCOSUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatECCOS

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"min_quality": 0.7}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return OVERRIDE_MODEL

    @pytest.mark.xfail(
        reason="the snapshot matches, but langchain-core 1.8's load() revives only classes in its own import "
        "mapping (even with allowed_objects='all'); test_chat_models.py::test_serialization_round_trip loads "
        "ChatECCOS with allowed_objects=[ChatECCOS]",
        raises=ValueError,
        strict=True,
    )
    def test_serdes(self, model: BaseChatModel, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)


class TestChatECCOSIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _loopback_router(self, lc_router: Any) -> None:
        self.router = lc_router

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatECCOS

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": self.router, "min_quality": 0.6}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return OVERRIDE_MODEL

    @pytest.mark.xfail(
        reason="downloads its image from GitHub and the test lane is offline (pytest-socket blocks it); "
        "test_chat_models.py::test_image_input_routes_to_vision_models covers images offline",
        strict=True,
    )
    def test_image_inputs(self, model: BaseChatModel) -> None:
        super().test_image_inputs(model)

    @pytest.mark.xfail(
        reason="the loopback server answers JSON mode with a fixed {'answer': ...} object; it cannot "
        "follow the prompt's 'setup'/'punchline' keys",
        strict=True,
    )
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(
        reason="the loopback server fills string tool arguments with 'test'; it cannot copy the "
        "Chinese/Japanese names from the prompt",
        strict=True,
    )
    def test_unicode_tool_call_integration(self, model: BaseChatModel, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, **kwargs)
