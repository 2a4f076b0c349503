"""Tool choice and structured output for ``ChatECCOS``: LangChain's spellings turned into OpenAI call options.

A structured-output call is a bound model (a forced tool call, or a ``response_format``) piped into the parser
for the schema; the options it binds are what restrict routing to the pool models that support the method.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticToolsParser
from langchain_core.output_parsers.pydantic import PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

Method = Literal["function_calling", "json_schema", "json_mode"]


def openai_tool_choice(choice: dict[str, Any] | str | bool) -> dict[str, Any] | str:
    """LangChain's tool_choice spellings in OpenAI's form."""
    if isinstance(choice, dict):
        return choice
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return str(choice)
    return {"type": "function", "function": {"name": str(choice)}}


def _response_format(schema: Any, method: Method, strict: bool | None) -> dict[str, Any]:
    """The ``response_format`` of a ``json_schema`` or ``json_mode`` call."""
    if method == "json_mode":
        return {"type": "json_object"}
    function = convert_to_openai_tool(schema, strict=strict)["function"]
    spec = {"name": function["name"], "schema": function["parameters"]}
    if function.get("description"):
        spec["description"] = function["description"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def structured_output(
    model: BaseChatModel,
    schema: dict[str, Any] | type | None,
    method: Method,
    include_raw: bool,
    strict: bool | None,
    kwargs: dict[str, Any],
) -> Runnable:
    """``model.with_structured_output(...)``: the bound model piped into the schema's parser."""
    if schema is None and method != "json_mode":
        raise ValueError(f"with_structured_output(method={method!r}) needs a schema; only 'json_mode' works without")
    is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema} if schema is not None else None
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        llm = model.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=trace, **kwargs)
        parser: Runnable = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            if is_pydantic
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    elif method in ("json_schema", "json_mode"):
        if trace is not None:
            kwargs["ls_structured_output_format"] = trace
        llm = model.bind(response_format=_response_format(schema, method, strict), **kwargs)
        parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
    else:
        raise ValueError(
            f"unknown structured output method {method!r}: use 'function_calling', 'json_schema' or 'json_mode'"
        )
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


__all__ = ["Method", "openai_tool_choice", "structured_output"]
