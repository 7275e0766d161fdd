"""The service's request and response bodies (pydantic): what the endpoints take and answer, from which FastAPI
builds the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Any = Field(
        description="an array of numbers of the model's input_shape; for image models a base64 PNG/JPEG; for text "
        "models a string"
    )
    label: str | int | float = Field(description="its label (classification) or value (regression)")


class AdaptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    support: list[Example] = Field(min_length=1)
    steps: int | None = Field(default=None, ge=0, description="inner steps (default: the run's test steps)")
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class AdaptResponse(BaseModel):
    adapted_id: str
    labels: list[str | int | float]
    adapt_ms: float
    cached: bool


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adapted_id: str | None = Field(default=None, description="from /v1/adapt; or give model and support")
    model: str | None = None
    support: list[Example] | None = Field(default=None, min_length=1)
    steps: int | None = Field(default=None, ge=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    inputs: list[Any] = Field(min_length=1)
    top_k: int | None = Field(default=None, ge=1)


class Scored(BaseModel):
    label: str | int | float
    probability: float


class PredictResponse(BaseModel):
    adapted_id: str
    predictions: list[list[Scored]] | None = Field(default=None, description="classification: labels, best first")
    values: list[float | list[float]] | None = Field(default=None, description="regression: one value per input")


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int
    rating: float


class UserFeatures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gender: str | None = None
    age: int | None = None
    occupation: str | None = None
    zip_code: str | None = None


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    ratings: list[Rating] = Field(min_length=1)
    user_features: UserFeatures | None = None
    top: int = Field(default=20, ge=1)
    steps: int | None = Field(default=None, ge=0)


class Item(BaseModel):
    item_id: int
    title: str
    score: float


class RecommendResponse(BaseModel):
    items: list[Item]


class ErrorDetail(BaseModel):
    code: str
    message: str
    limit: str | None = None
    value: Any = None
    max: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of an endpoint, for the OpenAPI schema (all share one body)."""
    return {status: {"model": ErrorResponse} for status in (422, *statuses)}
