"""OpenAI request validation and response bodies (chat.completion, chat.completion.chunk, text_completion).

Requests are validated strictly (a string where a number belongs is an error, as with OpenAI) and every
problem becomes an `APIError` carrying the HTTP status and OpenAI's error fields, so the server never
answers a bad request with a traceback. Unknown fields are ignored (clients send many we do not use).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from core.infer.answer_format import AnswerFormat, AnswerFormatError
from core.infer.sampling import MAX_NEW_TOKENS_LIMIT, SamplingParams
from core.serve.logprobs import MAX_LOGPROBS

DEFAULT_MAX_TOKENS = 512
# MiniMind's serve_openai_api.py defaults (temperature 0.7, top_p 0.92); OpenAI's own default is 1.0/1.0.
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.7, 0.92


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    text: Optional[str] = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str = Field(min_length=1, max_length=256)
    arguments: Union[str, dict] = "{}"  # OpenAI sends a JSON string; an object is accepted too


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: FunctionCall

    def as_template_call(self) -> dict:
        args = self.function.arguments
        if isinstance(args, str):  # the template writes an object as JSON; a string that is one reads the same
            try:
                parsed = json.loads(args)
                args = parsed if isinstance(parsed, dict) else args
            except (ValueError, RecursionError):  # not JSON, or an integer over Python's digit limit
                pass
        return {"id": self.id, "type": "function", "function": {"name": self.function.name, "arguments": args}}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    tool_calls: Optional[list[MessageToolCall]] = Field(None, max_length=128)  # assistant turns
    tool_call_id: Optional[str] = None                                        # tool turns
    reasoning_content: Optional[str] = None                                   # assistant turns (MiniMind-3)

    def as_template_message(self) -> dict:
        content = self.content
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]: keep the text parts
            content = "".join(p.text or "" for p in content if p.type == "text")
        role = "system" if self.role == "developer" else self.role
        message = {"role": role, "content": content or ""}
        if self.tool_calls and role == "assistant":
            message["tool_calls"] = [c.as_template_call() for c in self.tool_calls]
        if self.reasoning_content and role == "assistant":
            message["reasoning_content"] = self.reasoning_content
        if role == "tool" and self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str = Field(min_length=1, max_length=256)
    description: Optional[str] = None
    parameters: Optional[dict] = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["function"]
    function: FunctionDef


class ChatTemplateKwargs(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    enable_thinking: Optional[bool] = None
    open_thinking: Optional[bool] = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=0, le=100_000)  # extension (vLLM/llama.cpp servers accept it too)
    repetition_penalty: Optional[float] = Field(None, gt=0.0, le=10.0)  # extension
    ignore_eos: Optional[bool] = None  # extension (vLLM's): run to max_tokens (benchmarks)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stream: Optional[bool] = None  # null = false, as OpenAI accepts
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(None, ge=1, le=1)

    def sampling(self, max_context: int) -> SamplingParams:
        """A `max_tokens` beyond the context is accepted, as MiniMind's own server, Ollama and llama.cpp's do:
        generation stops where the context is full, with finish_reason "length". Only a value no MiniMind
        model could ever serve (over the largest position table) is refused."""
        field = "max_completion_tokens" if self.max_completion_tokens else "max_tokens"
        limit = self.max_completion_tokens or self.max_tokens or min(DEFAULT_MAX_TOKENS, max_context)
        if limit > MAX_NEW_TOKENS_LIMIT:
            raise APIError(400, f"{field} is over {MAX_NEW_TOKENS_LIMIT:,}, more than any MiniMind model's context; "
                                f"ask for at most {max_context} (this model's context, prompt included)",
                           param=field, code="invalid_value")
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stop) > 16 or any(not s or len(s) > 256 for s in stop):
            raise APIError(400, "stop must be up to 16 non-empty strings of at most 256 characters",
                           param="stop", code="invalid_value")
        try:
            return SamplingParams(
                max_new_tokens=min(limit, max_context), stop=stop, seed=self.seed,
                stop_token_ids=[] if self.ignore_eos else None,
                temperature=DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
                top_p=DEFAULT_TOP_P if self.top_p is None else self.top_p,
                top_k=0 if self.top_k is None else self.top_k,
                repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty)
        except ValidationError as exc:  # a limit of SamplingParams this request model does not repeat
            err = exc.errors()[0]
            param = str(err["loc"][0]) if err["loc"] else None
            raise APIError(400, f"{param}: {err['msg']}", param=param, code="invalid_value") from None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    tools: Optional[list[ToolDef]] = Field(None, max_length=128)
    tool_choice: Union[Literal["none", "auto", "required"], dict, None] = None
    response_format: Optional[dict] = None                                    # text, json_object, json_schema
    parallel_tool_calls: Optional[bool] = None                                # False: one call at most
    open_thinking: Optional[bool] = None                                      # MiniMind-3 server extension
    chat_template_kwargs: Optional[ChatTemplateKwargs] = None                 # vLLM/SGLang extension

    def answer_format(self) -> AnswerFormat:
        """What the answer may be (core.infer.answer_format): the offered tools, tool_choice and response_format,
        enforced while decoding."""
        tools = [t.model_dump(exclude_none=True) for t in self.tools or []]
        try:
            return AnswerFormat.from_openai(tools, self.tool_choice, self.response_format, self.parallel_tool_calls)
        except AnswerFormatError as exc:
            raise APIError(400, f"{exc.param}: {exc}", param=exc.param, code="invalid_value") from None

    def think(self) -> bool | None:
        """Open the reasoning block? `open_thinking`, else chat_template_kwargs' open/enable_thinking; None =
        the template's default."""
        kwargs = self.chat_template_kwargs or ChatTemplateKwargs()
        for value in (self.open_thinking, kwargs.open_thinking, kwargs.enable_thinking):
            if value is not None:
                return value
        return None


MAX_PROMPTS = 128  # prompts in one batched completions request


class CompletionRequest(_Sampling):
    # A string, a list of token ids, or a batch of either (one choice per prompt, `index` = its position).
    prompt: Union[str, list[int], list[str], list[list[int]]]
    max_tokens: Optional[int] = Field(None, ge=0)  # 0: no completion (with `echo`: score the prompt alone)
    echo: Optional[bool] = None                    # the prompt is repeated before the completion
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)  # top log-probs per token (OpenAI: <= 5)

    def prompt_values(self) -> list[str | list[int]]:
        """The prompts of this request, one or a batch."""
        prompt = self.prompt
        batch = [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else list(prompt)
        if not batch:
            raise APIError(400, "prompt: the list of prompts is empty", param="prompt", code="invalid_value")
        if len(batch) > MAX_PROMPTS:
            raise APIError(400, f"prompt: at most {MAX_PROMPTS} prompts per request (got {len(batch)})",
                           param="prompt", code="invalid_value")
        if self.stream and (len(batch) > 1 or self.echo or self.logprobs is not None):
            raise APIError(400, "stream: a streamed completion takes one prompt, without echo or logprobs; "
                                "send stream=false", param="stream", code="invalid_value")
        return batch

    def generates(self) -> bool:
        return self.max_tokens != 0


def parse(model_cls: type[BaseModel], payload) -> BaseModel:
    """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
    if not isinstance(payload, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(payload).__name__}")
    try:
        return model_cls.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        missing = err["type"] == "missing"
        message = f"{loc}: required field missing" if missing else f"{loc}: {err['msg']}"
        return_code = "missing_required_parameter" if missing else "invalid_type" if "type" in err["type"] else \
            "invalid_value"
        raise APIError(400, message, param=loc, code=return_code) from None


# ---------------------------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def chat_completion(cid: str, model: str, output, finish_reason: str, usage) -> dict:
    """`output`: a core.infer.chat_output.ChatOutput (content, reasoning, tool calls)."""
    message = {"role": "assistant", "content": output.content if output.content or not output.tool_calls else None}
    if output.reasoning:
        message["reasoning_content"] = output.reasoning
    if output.tool_calls:
        message["tool_calls"] = [c.openai() for c in output.tool_calls]
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": chat_finish_reason(finish_reason, bool(output.tool_calls))}],
            "usage": usage_body(usage)}


def chat_finish_reason(reason: str, called_tools: bool) -> str:
    return "tool_calls" if called_tools and reason != "length" else reason


def chat_delta(delta, call_index: int) -> dict:
    """A core.infer.chat_output.OutputDelta as a chat.completion.chunk delta. A call comes whole, in one
    delta with its index, id, name and all its arguments (OpenAI may spread arguments over several; clients
    concatenate them, so one piece is the same to them)."""
    if delta.kind == "tool_call":
        return {"tool_calls": [{"index": call_index, **delta.call.openai()}]}
    return {"reasoning_content" if delta.kind == "reasoning" else "content": delta.text}


def chat_chunk(cid: str, model: str, delta: dict, finish_reason: str | None = None, usage=None,
               no_choices: bool = False) -> dict:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [] if no_choices else [{"index": 0, "delta": delta, "logprobs": None,
                                               "finish_reason": finish_reason}]}
    if usage is not None:
        body["usage"] = usage_body(usage)
    return body


def text_completion(cid: str, model: str, text: str, finish_reason: str | None, usage=None) -> dict:
    return text_completions(cid, model, [{"text": text, "logprobs": None, "finish_reason": finish_reason}], usage)


def text_completions(cid: str, model: str, choices: list[dict], usage=None) -> dict:
    """`choices`: {"text", "logprobs", "finish_reason"} per prompt, in the request's order."""
    body = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, **c} for i, c in enumerate(choices)]}
    if usage is not None:
        body["usage"] = usage_body(usage)
    return body
