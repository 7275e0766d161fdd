"""A Python client of ``fastadapt serve`` (extra ``serve``)::

from fastadapt.client import Client
client = Client("http://127.0.0.1:8000", api_key="...")
adapted = client.adapt("digits", support=[{"input": [...], "label": "a"}, ...])
client.predict(adapted["adapted_id"], inputs=[[...]])
"""

from __future__ import annotations

from typing import Any

from ._extras import require


class ServiceError(RuntimeError):
    """The service answered with an error; ``status`` and ``code`` are its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class Client:
    """Calls the service at ``url``; ``http`` replaces the ``httpx.Client`` it makes (a test's ``TestClient``)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, http: Any = None) -> None:
        httpx = require("httpx", "serve", "fastadapt.client")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http if http is not None else httpx.Client(base_url=url, timeout=timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body, headers=self._headers)
        try:
            data = response.json()
        except ValueError:  # not the service's JSON (a proxy's error page)
            data = None
        if response.status_code >= 400 or data is None:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            message = error.get("message", response.text[:300])
            raise ServiceError(response.status_code, error.get("code", "error"), message)
        return data

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["models"]  # type: ignore[no-any-return]

    def adapt(self, model: str, support: list[dict[str, Any]], steps: int | None = None, seed: int = 0) -> Any:
        return self._call("POST", "/v1/adapt", {"model": model, "support": support, "steps": steps, "seed": seed})

    def predict(self, adapted_id: str, inputs: list[Any], top_k: int | None = None) -> Any:
        return self._call("POST", "/v1/predict", {"adapted_id": adapted_id, "inputs": inputs, "top_k": top_k})

    def recommend(
        self,
        model: str,
        ratings: list[dict[str, Any]],
        user_features: dict[str, Any] | None = None,
        top: int = 20,
        steps: int | None = None,
    ) -> Any:
        body = {"model": model, "ratings": ratings, "user_features": user_features, "top": top, "steps": steps}
        return self._call("POST", "/v1/recommend", body)["items"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
